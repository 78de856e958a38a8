"""An AI result was recorded: an Observation or RiskAssessment produced by a model Device
(``resources.search.visibility.RESULT_DEVICE_PARAMS``: Observation.device, RiskAssessment.performer)."""

from resources.subscriptions.topic import Topic, Trigger


def _by_device(element: str):  # type: ignore[no-untyped-def]
    def when(previous: dict | None, current: dict) -> bool:
        ref = str((current.get(element) or {}).get("reference", ""))
        return previous is None and ref.startswith("Device/")

    return when


TOPIC = Topic(
    code="ai-result-recorded",
    title="AI result recorded",
    description="An AI model's Observation or RiskAssessment is recorded.",
    triggers=(
        Trigger("Observation", "device:missing=false", _by_device("device"), "by a Device"),
        Trigger(
            "RiskAssessment", "performer:missing=false", _by_device("performer"), "by a Device"
        ),
    ),
)
