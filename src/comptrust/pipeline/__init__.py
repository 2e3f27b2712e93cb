"""The eval pipeline, one module per arrow of DESIGN's flow: build -> generate -> score (+ aggregate).
runner.py strings them together; results_doc.py writes what they produce."""
