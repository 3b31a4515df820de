"""sleuth: an agentic, tool-using video reasoner.

The code lives in four top-level packages whose names say what they do:
``agent`` decides, ``tools`` touches videos and indexes, ``eval`` runs
benchmarks and reports, ``prompts`` holds every prompt as a file. This
package only holds the command line and shared error types.
"""

__version__ = "0.1.0"
