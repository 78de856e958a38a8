"""FHIR → a patient's report as HTML and PDF (Jinja2 + WeasyPrint): resources in, bytes out.

``render_pdf(ReportInput)`` takes the final DiagnosticReport and the resources it cites (already
read by the caller) and returns the PDF. No network and no file access: images come from the
Media/Binary resources given, and WeasyPrint's URL fetcher refuses everything else.
"""

from mappings.report.render import ReportInput, person_name, render_html, render_pdf

__all__ = ["ReportInput", "person_name", "render_html", "render_pdf"]
