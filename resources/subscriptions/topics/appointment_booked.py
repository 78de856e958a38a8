"""An Appointment was booked (R4 appointment.html: status ``booked``)."""

from resources.subscriptions.topic import Topic, Trigger, status_became

TOPIC = Topic(
    code="appointment-booked",
    title="Appointment booked",
    description="An Appointment's status becomes booked.",
    triggers=(
        Trigger("Appointment", "status=booked", status_became("booked"), "status -> booked"),
    ),
)
