"""The notice every AI result carries wherever it is shown or sent: pages (passed
to the templates as the ``ai_notice`` text), messages, case records, DICOM and
FHIR objects, and the diagnose command's output. One spelling, one place."""

AI_NOTICE = "AI result, not for clinical use"
