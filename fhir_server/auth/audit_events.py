"""AuditEvent resources for the audit log, shaped after IHE Basic Audit Log Patterns (BALP):
type/subtype say what happened, ``agent`` who (the user's fhirUser and the client), ``source``
which server observed it, ``entity`` what it touched and which patient."""

from __future__ import annotations

from fhir_server import __version__

DCM = "http://dicom.nema.org/resources/ontology/DCM"
REST = "http://terminology.hl7.org/CodeSystem/audit-event-type"
INTERACTION = "http://hl7.org/fhir/restful-interaction"
ACTIONS = {
    "create": "C",
    "read": "R",
    "vread": "R",
    "history-instance": "R",
    "history-type": "R",
    "history-system": "R",
    "search-type": "E",
    "search-system": "E",
    "search-compartment": "E",
    "update": "U",
    "conditional-update": "U",
    "patch": "U",
    "delete": "D",
    "conditional-delete": "D",
    "transaction": "E",
    "batch": "E",
    "operation": "E",
}
# FHIR AuditEvent.outcome: 0 success, 4 minor failure (client error), 8 serious (server fault)
OUTCOME = {True: "0"}


def outcome_code(status: int) -> str:
    return "0" if status < 400 else "4" if status < 500 else "8"


def _agents(client_id: str | None, username: str | None, fhir_user: str | None, ip: str | None):  # type: ignore[no-untyped-def]
    agents = []
    if username or fhir_user:
        who: dict = {"display": username} if username else {}
        if fhir_user:
            who["reference"] = fhir_user
        agent: dict = {
            "type": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                        "code": "IRCP",
                        "display": "information recipient",
                    }
                ]
            },
            "who": who,
            "requestor": True,
        }
        if username:
            agent["altId"] = username  # the login name: AuditEvent?altid=
            agent["name"] = username  # AuditEvent?agent-name=
        if ip:
            agent["network"] = {"address": ip, "type": "2"}
        agents.append(agent)
    if client_id:
        app: dict = {
            "type": {"coding": [{"system": DCM, "code": "110150", "display": "Application"}]},
            "who": {"identifier": {"system": "urn:hearth:client", "value": client_id}},
            "requestor": not agents,
        }
        if ip and not agents:
            app["network"] = {"address": ip, "type": "2"}
        agents.append(app)
    if not agents:
        agents.append(
            {
                "who": {"display": "anonymous"},
                "requestor": True,
                **({"network": {"address": ip, "type": "2"}} if ip else {}),
            }
        )
    return agents


def _source(base: str) -> dict:
    return {
        "site": base,
        "observer": {"display": f"Hearth {__version__}"},
        "type": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                "code": "4",
                "display": "Application Server",
            }
        ],
    }


def rest_event(
    *,
    base: str,
    interaction: str,
    status: int,
    client_id: str | None,
    username: str | None,
    fhir_user: str | None,
    patient: str | None,
    ip: str | None,
    what: list[str],
    query: str | None = None,
    detail: str | None = None,
    agents: list[dict] | None = None,
) -> dict:
    """One RESTful interaction (BALP Read/Create/Update/Delete/Query); ``agents`` replaces the
    agents built from the caller (an operator's command instead of an app)."""
    entities: list[dict] = []
    for ref in what[:100]:
        entities.append(
            {
                "what": {"reference": ref},
                "type": {
                    "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                    "code": "2",
                    "display": "System Object",
                },
            }
        )
    if query is not None:
        entities.append(
            {
                "type": {
                    "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                    "code": "2",
                },
                "role": {
                    "system": "http://terminology.hl7.org/CodeSystem/object-role",
                    "code": "24",
                    "display": "Query",
                },
                "query": _b64(query),
            }
        )
    if patient:
        entities.append(
            {
                "what": {"reference": f"Patient/{patient}"},
                "role": {
                    "system": "http://terminology.hl7.org/CodeSystem/object-role",
                    "code": "1",
                    "display": "Patient",
                },
            }
        )
    event: dict = {
        "resourceType": "AuditEvent",
        "type": {"system": REST, "code": "rest", "display": "Restful Operation"},
        "subtype": [{"system": INTERACTION, "code": interaction}],
        "action": ACTIONS.get(interaction, "E"),
        "outcome": outcome_code(status),
        "agent": agents or _agents(client_id, username, fhir_user, ip),
        "source": _source(base),
    }
    if detail:
        event["outcomeDesc"] = detail[:500]
    if entities:
        event["entity"] = entities
    return event


def operator_agents(user: str, host: str, command: str) -> list[dict]:
    """The agents of an operator's command-line action: the person (by their OS login on
    ``host``) and the command they ran."""
    return [
        {
            "type": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                        "code": "AUT",
                        "display": "author (originator)",
                    }
                ]
            },
            "who": {"display": f"{user}@{host} (operator)"},
            "altId": user,
            "requestor": True,
            "network": {"address": host, "type": "1"},
        },
        {
            "type": {"coding": [{"system": DCM, "code": "110150", "display": "Application"}]},
            "who": {"identifier": {"system": "urn:hearth:cli", "value": command}},
            "requestor": False,
        },
    ]


def load_event(
    *, base: str, agents: list[dict], files: list[str], counts: dict[str, int], failed: int
) -> dict:
    """One ``hearth load`` run (DICOM 110107 Import): the files read, what was created, updated
    or left unchanged, and how many items failed; each write has its own event as well."""
    detail = [{"type": k, "valueString": str(v)} for k, v in sorted(counts.items())]
    detail.append({"type": "failed", "valueString": str(failed)})
    entities = [
        {
            "type": {
                "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                "code": "2",
                "display": "System Object",
            },
            "name": name[:500],
            **({"detail": detail} if i == 0 else {}),
        }
        for i, name in enumerate(files[:100] or ["(no files)"])
    ]
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    return {
        "resourceType": "AuditEvent",
        "type": {"system": DCM, "code": "110107", "display": "Import"},
        "subtype": [{"system": "urn:hearth:audit", "code": "load", "display": "hearth load"}],
        "action": "C",
        "outcome": "0" if not failed else "4",
        "outcomeDesc": f"loaded: {summary or 'nothing'}, failed {failed}",
        "agent": agents,
        "source": _source(base),
        "entity": entities,
    }


def client_agents(client_id: str | None, username: str | None, fhir_user: str | None) -> list[dict]:
    """The agents of a client's request (the user, if any, and the client), for events written
    after the request itself (a ``$import`` job's writes)."""
    return _agents(client_id, username, fhir_user, None)


def import_event(
    *, base: str, agents: list[dict], job_id: str, inputs: list[str], counts: dict[str, int],
    failed: int,
) -> dict:  # fmt: skip
    """One finished ``$import`` job (DICOM 110107 Import): the input URLs, what was created,
    updated or left unchanged, and how many lines failed; each batch has its own event."""
    event = load_event(base=base, agents=agents, files=inputs, counts=counts, failed=failed)
    event["subtype"] = [{"system": "urn:hearth:audit", "code": "import", "display": "$import"}]
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    event["outcomeDesc"] = f"$import {job_id}: {summary or 'nothing'}, failed {failed}"
    return event


def security_event(
    *,
    base: str,
    kind: str,
    success: bool,
    client_id: str | None,
    username: str | None,
    fhir_user: str | None = None,
    ip: str | None = None,
    detail: str | None = None,
) -> dict:
    """A login, a failed login or a token issue (DICOM 110114 User Authentication)."""
    subtype = {
        "login": {"system": DCM, "code": "110122", "display": "Login"},
        "token": {"system": "urn:hearth:audit", "code": "token-issue", "display": "Token issued"},
        "revoke": {"system": "urn:hearth:audit", "code": "token-revoke", "display": "Revoked"},
        "password-reset": {"system": "urn:hearth:audit", "code": "password-reset"},
        "register": {"system": "urn:hearth:audit", "code": "register"},
    }[kind]
    event: dict = {
        "resourceType": "AuditEvent",
        "type": {"system": DCM, "code": "110114", "display": "User Authentication"},
        "subtype": [subtype],
        "action": "E",
        "outcome": "0" if success else "4",
        "agent": _agents(client_id, username, fhir_user, ip),
        "source": _source(base),
    }
    if detail:
        event["outcomeDesc"] = detail[:500]
    return event


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()[:4096]).decode()


ACCOUNT_ACTIONS = {
    # subtype code: (display, DICOM event type, action)
    "user-create": ("Account created", "110137", "C"),
    "user-deactivate": ("Account deactivated", "110137", "U"),
    "user-reactivate": ("Account reactivated", "110137", "U"),
    "user-roles": ("Account roles changed", "110136", "U"),
    "user-reset-totp": ("Second factor reset", "110137", "U"),
    "self-register": ("Account created by self-registration", "110137", "C"),
}
_EVENT_TYPES = {"110136": "Security Roles Changed", "110137": "User Security Attributes Changed"}


def account_event(
    *,
    base: str,
    action: str,
    client_id: str | None,
    username: str | None,
    fhir_user: str | None,
    target: str,
    target_fhir_user: str | None,
    detail: dict[str, str],
) -> dict:
    """An administrator's change to an account (DICOM 110136 Security Roles Changed / 110137
    User Security Attributes Changed): the administrator and their app as agents, the account
    as the entity (its login name in ``entity.name``: ``AuditEvent?entity-name=``, its fhirUser
    in ``entity.what``), what changed in ``entity.detail``."""
    display, event_type, code = ACCOUNT_ACTIONS[action]
    what: dict = {"identifier": {"system": "urn:hearth:user", "value": target}}
    if target_fhir_user:
        what["reference"] = target_fhir_user
    entity: dict = {
        "what": what,
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
            "code": "2",
            "display": "System Object",
        },
        "role": {
            "system": "http://terminology.hl7.org/CodeSystem/object-role",
            "code": "11",
            "display": "Security User Entity",
        },
        "name": target,
    }
    if detail:
        entity["detail"] = [{"type": k, "valueString": v} for k, v in detail.items() if v]
    return {
        "resourceType": "AuditEvent",
        "type": {"system": DCM, "code": event_type, "display": _EVENT_TYPES[event_type]},
        "subtype": [{"system": "urn:hearth:audit", "code": action, "display": display}],
        "action": code,
        "outcome": "0",
        "agent": _agents(client_id, username, fhir_user, None),
        "source": _source(base),
        "entity": [entity],
    }
