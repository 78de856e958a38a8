"""Any resource type + criteria: the Subscription's filter names the type and the search criteria
(``Observation?code=http://loinc.org|1234-5``); every create or update that meets them."""

from resources.subscriptions.topic import Topic

TOPIC = Topic(
    code="resource-changed",
    title="Any resource type + criteria",
    description="A resource of the filter's type is created or updated and meets its criteria.",
    any_type=True,
)
