"""Views of reasoning traces: the trace page, the terminal tree, DOT/Mermaid exports and the run browser.

``analysis`` holds what every view computes about a trace (evidence, step
summaries, labels); ``graph`` lays the reasoning graph out for drawing,
``frame_axis`` puts every run's frames for a question on one time axis and
``labels`` says what a run or trace is not (random weights, a text-only
planner, a forced answer). The renderers import these and never each other,
except where one page embeds another (the trace page embeds the exports, the
run browser embeds trace pages). ``cli`` registers the ``sleuth trace`` commands.
"""
