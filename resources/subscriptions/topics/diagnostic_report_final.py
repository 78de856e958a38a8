"""A DiagnosticReport became final (R4 diagnosticreport.html: status ``final``)."""

from resources.subscriptions.topic import Topic, Trigger, status_became

TOPIC = Topic(
    code="diagnostic-report-final",
    title="DiagnosticReport final",
    description="A DiagnosticReport's status becomes final.",
    triggers=(
        Trigger("DiagnosticReport", "status=final", status_became("final"), "status -> final"),
    ),
)
