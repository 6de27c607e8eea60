"""The trainer job: collect confirmed verdicts, refit, gate against the champion, promote."""
