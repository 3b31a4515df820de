"""Views of reasoning traces: the trace page, the terminal tree, DOT/Mermaid exports and the run browser.

``analysis`` holds what every view computes about a trace (evidence, step
summaries, labels); the renderers import it and never each other, except
where one page embeds another (the trace page embeds the exports, the run
browser embeds trace pages). ``cli`` registers the ``sleuth trace`` commands.
"""
