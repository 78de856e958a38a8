"""One module per FHIR REST interaction (R4 http.html), each a function Context × request → Reply."""
