"""SMART App Launch 2.2 and Backend Services: Hearth's own OAuth 2.0 authorization server (one
module per concern) and the enforcement of its tokens on every FHIR interaction."""
