"""A Task got an owner, or a different one (R4 task.html: ``Task.owner`` is who is responsible)."""

from resources.subscriptions.topic import Topic, Trigger


def _assigned(previous: dict | None, current: dict) -> bool:
    owner = (current.get("owner") or {}).get("reference")
    before = ((previous or {}).get("owner") or {}).get("reference")
    return owner is not None and owner != before


TOPIC = Topic(
    code="task-assigned",
    title="Task assigned",
    description="A Task is assigned to an owner (a new owner, or a Task created with one).",
    triggers=(Trigger("Task", "owner:missing=false", _assigned, "Task.owner set or changed"),),
)
