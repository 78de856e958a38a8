"""Search parameters the worklists need beyond R4's own: ``Task?performer-type=`` (R4 names
the Task.performerType parameter ``performer``; both work). Registered as built-ins when the
search engine is built, so they index every Task from the first write."""

from __future__ import annotations

from resources.search import SearchEngine

TASK_PERFORMER_TYPE = {
    "resourceType": "SearchParameter",
    "id": "Task-performer-type",
    "url": "http://hearth.local/fhir/SearchParameter/Task-performer-type",
    "name": "performer-type",
    "status": "active",
    "description": "The role that performs the Task (Task.performerType), as worklists query it",
    "code": "performer-type",
    "base": ["Task"],
    "type": "token",
    "expression": "Task.performerType",
}


def register(search: SearchEngine) -> None:
    search.add_search_parameter(TASK_PERFORMER_TYPE)
