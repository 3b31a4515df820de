"""Trace page, DOT/Mermaid export, terminal tree and the ``sleuth trace`` commands (no browser needed)."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest
from rich.console import Console

from agent.trace import Edge, FrameRef, Node
from eval.views.analysis import EVIDENCE_TOLERANCE_S, evidence_flags, timeline_marks, timeline_span, unseen_evidence
from eval.views.export import to_dot, to_mermaid
from eval.views.html import fill_missing_thumbnails, render_trace_html, write_trace_html
from eval.views.tree import trace_outline, trace_tree
from sleuth.cli import main as sleuth_main
from tests.trace_samples import EVIDENCE, OPTIONS, RESAMPLE_TIMES, SEARCH_HITS, VIEW_TIMES, build_trace


class _Collector(HTMLParser):
    """Collects every start tag with its attributes, in document order."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def with_class(self, name: str) -> list[dict[str, str]]:
        return [a for _, a in self.tags if name in a.get("class", "").split()]


def parse(html: str) -> _Collector:
    collector = _Collector()
    collector.feed(html)
    return collector


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    try:
        sleuth_main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out = capsys.readouterr()
    return code, out.out, out.err


# --------------------------------------------------------------------------- evidence and marks


def test_evidence_marks_the_cited_moment_in_every_source_but_not_its_neighbours():
    trace = build_trace()
    flags = evidence_flags(trace)
    flagged = sorted((f.t, f.source) for f, e in zip(trace.frames(), flags) if e)
    # 12.0 was a search hit and a viewed frame; 31.5 a search hit, a viewed and a resampled frame.
    assert flagged == [(12.0, "search"), (12.0, "view"), (31.5, "resample"), (31.5, "search"), (31.5, "view")]
    # 31.0 and 32.0 lie within the tolerance of 31.5 but are not the nearest frames.
    assert 31.0 in RESAMPLE_TIMES and 32.0 in RESAMPLE_TIMES
    assert unseen_evidence(trace) == []


def test_cited_moment_never_seen_is_reported_and_nothing_is_highlighted_for_it():
    trace = build_trace()
    trace.answer.evidence = [12.04, 50.0 + EVIDENCE_TOLERANCE_S + 0.7]  # rounding, then a moment never looked at
    flags = evidence_flags(trace)
    assert sorted({f.t for f, e in zip(trace.frames(), flags) if e}) == [12.0]
    assert unseen_evidence(trace) == [trace.answer.evidence[1]]


def test_timeline_marks_follow_the_trace_frames_in_order():
    trace = build_trace()
    marks = timeline_marks(trace)
    frames = trace.frames()
    assert [(m.t, m.source, m.shown) for m in marks] == [(f.t, f.source, f.shown) for f in frames]
    assert len(marks) == 8 + len(SEARCH_HITS) + len(VIEW_TIMES) + len(RESAMPLE_TIMES)
    owners = {m.node_id for m in marks}
    assert owners == {n.id for n in trace.nodes if n.frames}


def test_timeline_spans_the_seen_moments_when_duration_is_unknown():
    trace = build_trace(duration_s=None)
    span, known = timeline_span(trace)
    assert not known
    assert span >= max(f.t for f in trace.frames())
    assert timeline_span(build_trace(duration_s=75.0)) == (75.0, True)


# --------------------------------------------------------------------------- the page


def test_page_shows_question_options_answer_gold_and_costs():
    trace = build_trace(option="B", gold="C")
    html = render_trace_html(trace)
    doc = parse(html)
    assert trace.question in html
    options = [a for t, a in doc.tags if t == "li" and "option" in a.get("class", "")]
    assert [o["data-letter"] for o in options] == list("ABCDEFGH")
    assert [o["data-letter"] for o in options if "chosen" in o["class"].split()] == ["B"]
    assert [o["data-letter"] for o in options if "gold" in o["class"].split()] == ["C"]
    assert doc.with_class("verdict")[0]["data-verdict"] == "wrong"
    for text in OPTIONS:
        assert text.split(") ", 1)[1].replace("'", "&#39;") in html
    # per-step tokens / latency / cost and the recorded totals
    steps = [a["data-step"] for t, a in doc.tags if t == "tr" and "data-step" in a]
    assert steps == ["0", "1", "2", "3", "4", "5"]
    assert f"{trace.totals.tokens.total:,}" in html
    assert f"${trace.totals.cost_usd:.4f}" in html


def test_page_shows_each_step_with_calls_observations_errors_and_evidence_edges():
    trace = build_trace()
    doc = parse(render_trace_html(trace))
    nodes = [a for t, a in doc.tags if t == "article"]
    assert [a["data-node"] for a in nodes] == [n.id for n in trace.nodes]
    failed = [a["data-node"] for a in nodes if "has-error" in a["class"].split()]
    assert failed == [n.id for n in trace.nodes if n.error]
    evidence_links = [(a["data-edge-dir"], a["data-other"]) for t, a in doc.tags if a.get("data-edge-kind") == "evidence"]
    targets = [e.target for e in trace.edges if e.kind == "evidence"]
    answer_id = next(n.id for n in trace.nodes if n.kind == "answer")
    assert sorted(o for d, o in evidence_links if d == "out") == sorted(targets)
    assert [o for d, o in evidence_links if d == "in"] == [answer_id] * len(targets)
    # every shown frame has a thumbnail figure; hidden search hits are chips
    figures = [a for t, a in doc.tags if t == "figure"]
    assert len(figures) == sum(f.shown for f in trace.frames())
    chips = [a for a in doc.with_class("chip") if a.get("data-source") == "search"]
    assert sorted(float(c["data-t"]) for c in chips) == sorted(t for t, _ in SEARCH_HITS)
    html = render_trace_html(trace)
    assert 'search_frames(query="woman opens kitchen drawer holding a letter", k=4)'.replace('"', "&#34;") in html
    assert "empty window" in html


def test_timeline_marks_in_the_page_match_the_trace():
    trace = build_trace()
    doc = parse(render_trace_html(trace))
    marks = doc.with_class("mark")
    frames = trace.frames()
    flags = evidence_flags(trace)
    assert len(marks) == len(frames)
    got = sorted((float(m["data-t"]), m["data-source"], m["data-evidence"] == "true", m["data-shown"] == "true") for m in marks)
    want = sorted((f.t, f.source, e, f.shown) for f, e in zip(frames, flags))
    assert got == want
    for m in marks:
        left = float(re.search(r"left:\s*([\d.]+)%", m["style"]).group(1))
        assert left == pytest.approx(100 * float(m["data-t"]) / trace.duration_s, abs=1e-3)
        assert m["href"] == f"#frame-{m['data-index']}"
    # every mark's anchor target exists on the page
    ids = {a.get("id") for _, a in doc.tags}
    assert all(m["href"][1:] in ids for m in marks)
    cited = sorted(float(a["data-cited-t"]) for _, a in doc.tags if "data-cited-t" in a)
    assert cited == sorted(EVIDENCE)


def test_page_is_self_contained_and_escapes_text():
    trace = build_trace()
    trace.question = 'Is <script>alert("x")</script> shown?'
    trace.nodes[2].text = "</div><img src=https://example.com/x.png>"
    # a thumbnail pointing elsewhere must never be fetched
    trace.nodes[1].frames[0].thumb = "https://example.com/frame.jpg"
    html = render_trace_html(trace)
    doc = parse(html)
    assert "<script>alert" not in html
    for tag, attrs in doc.tags:
        for name in ("src", "href"):
            value = attrs.get(name)
            if value is not None:
                assert value.startswith(("data:image/", "#")), (tag, name, value[:60])
    assert not any(t == "link" for t, _ in doc.tags)
    assert all(not a.get("src") for t, a in doc.tags if t == "script")


def test_page_without_answer_price_or_duration_still_renders():
    trace = build_trace(option=None, gold=None, priced=False, duration_s=None, with_thumbs=False, labels=["random-weights"])
    trace.answer = None
    html = render_trace_html(trace)
    doc = parse(html)
    assert doc.with_class("verdict")[0]["data-verdict"] == "unknown"
    assert doc.with_class("tl")[0]["data-duration-known"] == "false"
    assert "random-weights" in html
    assert len(doc.with_class("thumb-ph")) == sum(f.shown for f in trace.frames())
    assert not [m for m in doc.with_class("mark") if m["data-evidence"] == "true"]


def test_missing_thumbnails_come_from_the_video(synthetic_video, tmp_path):
    trace = build_trace(duration_s=4.0, with_thumbs=False)
    for node in trace.nodes:  # squeeze the sample's moments into the 4 s synthetic video
        for frame in node.frames:
            frame.t = round(frame.t / 15.0, 2)
    filled, note = fill_missing_thumbnails(trace, synthetic_video)
    assert note is None
    assert all(f.thumb and f.thumb.startswith("data:image/jpeg;base64,") for f in filled.frames() if f.shown)
    # search hits listed to the model get thumbnails too: the frame at their moment, as a shown frame there has
    hits = [f for f in filled.frames() if not f.shown]
    assert hits and all(f.thumb and f.thumb.startswith("data:image/jpeg;base64,") for f in hits)
    shown_at = {f.t: f.thumb for f in filled.frames() if f.shown}
    assert any(f.t in shown_at for f in hits)
    assert all(f.thumb == shown_at[f.t] for f in hits if f.t in shown_at)
    assert len({f.thumb for f in hits}) == len({f.t for f in hits})
    assert all(f.thumb is None for f in trace.frames())  # the original is untouched

    out = write_trace_html(trace, tmp_path / "page.html", video_path=synthetic_video)
    doc = parse(out.read_text())
    assert len(doc.with_class("thumb-ph")) == 0
    hit_figures = doc.with_class("hit")
    assert sorted(float(f["data-t"]) for f in hit_figures) == sorted(f.t for f in hits)
    assert "not shown to the model" in out.read_text()

    # no video: the page still renders, hits as timestamps, with a note saying why
    out = write_trace_html(trace, tmp_path / "no-video.html", video_path=tmp_path / "gone.mp4")
    doc = parse(out.read_text())
    assert not doc.with_class("hit") and len(doc.with_class("chip")) >= len(hits)
    assert "gone.mp4 not found" in out.read_text() and "search hits as timestamps" in out.read_text()

    _, note = fill_missing_thumbnails(trace, tmp_path / "gone.mp4")
    assert "gone.mp4" in note and "placeholders" in note
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    _, note = fill_missing_thumbnails(trace, broken)
    assert note and "placeholders" in note


# --------------------------------------------------------------------------- exports


def test_dot_export_has_every_node_and_edge():
    trace = build_trace()
    dot = to_dot(trace)
    for node in trace.nodes:
        assert re.search(rf'^\s+"{node.id}" \[label=', dot, re.M), node.id
    for edge in trace.edges:
        assert f'"{edge.source}" -> "{edge.target}"' in dot
    assert dot.count('label="evidence"') == sum(e.kind == "evidence" for e in trace.edges)
    assert dot.count("subgraph cluster_step") == len({n.step for n in trace.nodes})


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz 'dot' is not installed (apt-get install graphviz)")
def test_dot_export_is_accepted_by_graphviz():
    trace = build_trace()
    trace.nodes[2].text = 'He says "stop" \\ then {leaves} <fast>'
    result = subprocess.run(["dot", "-Tsvg"], input=to_dot(trace), capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "stop" in result.stdout


def test_mermaid_export_escapes_labels_and_styles_evidence_links():
    trace = build_trace()
    trace.nodes[2].text = 'He says "stop" <now>'
    text = to_mermaid(trace)
    assert text.startswith("flowchart TD\n")
    assert "#quot;stop#quot; #lt;now#gt;" in text
    links = [ln.strip() for ln in text.splitlines() if re.match(r"\s+\w+ (-->|-\.->|==>)", ln)]
    assert len(links) == len(trace.edges)
    styled = re.search(r"linkStyle ([\d,]+) ", text).group(1).split(",")
    assert [links[int(i)] for i in styled] == [
        f"{e.source} ==>|evidence| {e.target}" for e in trace.edges if e.kind == "evidence"
    ]
    failed = re.search(r"class ([\w,]+) failed", text).group(1).split(",")
    assert failed == [n.id for n in trace.nodes if n.error]


def test_odd_node_ids_become_valid_mermaid_ids():
    trace = build_trace()
    trace.nodes.append(Node(id="7-extra", kind="thought", step=6, text="late"))
    trace.edges.append(Edge(source=trace.nodes[-2].id, target="7-extra", kind="next"))
    text = to_mermaid(trace)
    assert 'n_7_extra["Thought: late"]' in text
    assert f"{trace.nodes[-2].id} --> n_7_extra" in text


# --------------------------------------------------------------------------- terminal


def render_tree(trace) -> str:
    console = Console(file=io.StringIO(), width=160, color_system=None, highlight=False)
    console.print(trace_tree(trace))
    return console.file.getvalue()


def test_terminal_tree_shows_steps_calls_frames_errors_and_answer():
    trace = build_trace(option="B", gold="C")
    text = render_tree(trace)
    assert "before planning" in text
    for step in range(1, 6):
        assert f"step {step}" in text
    assert 'search_frames(query="woman opens kitchen drawer holding a letter", k=4)' in text
    assert "⚠ empty window" in text
    assert "listed: 12.0s (0.312) ★  31.5s (0.298) ★  44.0s (0.221)  8.0s (0.184)" in text
    assert "30.0s  30.5s  31.0s  31.5s ★  32.0s  32.5s" in text
    assert "← prompted by n4" in text
    assert "answer wrong  chose B, gold C  cites 12.0s, 31.5s" in text
    assert re.search(r"B  She is looking for her keys\s+◀ agent", text)
    assert re.search(r"C  She hides .*✓ gold", text)
    assert f"{trace.totals.tokens.prompt:,} + {trace.totals.tokens.completion:,} tok" in text


def test_terminal_tree_and_outline_show_verdicts_captions_confidence_and_a_forced_answer():
    from tests.trace_samples import build_verdict_trace

    trace = build_verdict_trace()
    text = render_tree(trace)
    assert "[forced answer]" in text and "forced: budget exhausted" in text
    assert "judgement n7  confidence 2/3" in text
    assert "C supported (31.0s, 35.0s): she slides the letter under the tray" in text
    assert "A unknown (58.9s): the stove is never in view" in text
    assert "0.0s–20.0s  A woman enters a kitchen and opens a drawer.  (cached)" in text
    judge = next(n for s in trace_outline(trace)["steps"] for n in s["nodes"] if n["kind"] == "judgement")
    assert [(v["option"], v["verdict"], v["times"]) for v in judge["verdicts"]] == [
        (v.option, v.verdict, v.times) for v in trace.node("n7").verdicts]
    assert judge["confidence"] == 2
    assert "forced answer" in trace_outline(trace)["labels"]
    assert "Answer C (gold C) ✓ (forced: budget exhausted)" in to_dot(trace)


def test_outline_matches_the_trace_and_omits_thumbnails():
    trace = build_trace()
    outline = trace_outline(trace)
    json.dumps(outline)  # JSON-ready
    nodes = [n for s in outline["steps"] for n in s["nodes"]]
    assert [n["id"] for n in nodes] == [n.id for n in trace.nodes]
    frames = [f for n in nodes for f in n["frames"]]
    assert [(f["t"], f["source"], f["evidence"]) for f in frames] == [
        (f.t, f.source, e) for f, e in zip(trace.frames(), evidence_flags(trace))
    ]
    assert all("thumb" not in f for f in frames)
    assert sum(s["prompt_tokens"] for s in outline["steps"]) == trace.totals.tokens.prompt


# --------------------------------------------------------------------------- CLI


def test_cli_html_writes_a_page_next_to_the_trace(tmp_path, capsys):
    path = build_trace().save(tmp_path / "q.json")
    code, out, err = run_cli(["trace", "html", str(path)], capsys)
    assert code == 0, err
    page = tmp_path / "q.html"
    assert out.strip() == f"wrote {page}"
    assert len(parse(page.read_text()).with_class("mark")) == len(build_trace().frames())

    code, out, _ = run_cli(["trace", "html", str(path), "-o", str(tmp_path / "sub" / "p.html"), "--json"], capsys)
    assert code == 0
    info = json.loads(out)
    assert info["path"] == str(tmp_path / "sub" / "p.html")
    assert info["frames"] == len(build_trace().frames())
    assert info["evidence_frames"] == 5


def test_cli_html_finds_the_video_beside_the_trace(tmp_path, synthetic_video, capsys):
    trace = build_trace(duration_s=4.0, with_thumbs=False, video="clip.mp4")
    for node in trace.nodes:
        for frame in node.frames:
            frame.t = round(frame.t / 15.0, 2)
    shutil.copyfile(synthetic_video, tmp_path / "clip.mp4")
    path = trace.save(tmp_path / "q.json")
    code, _, err = run_cli(["trace", "html", str(path)], capsys)
    assert code == 0, err
    doc = parse((tmp_path / "q.html").read_text())
    assert not doc.with_class("thumb-ph")
    code, _, _ = run_cli(["trace", "html", str(path), "--no-thumbnails", "-o", str(tmp_path / "bare.html")], capsys)
    assert code == 0
    assert len(parse((tmp_path / "bare.html").read_text()).with_class("thumb-ph")) == sum(
        f.shown for f in trace.frames()
    )


def test_cli_show_dot_and_mermaid(tmp_path, capsys):
    trace = build_trace()
    path = trace.save(tmp_path / "q.json")
    code, out, _ = run_cli(["trace", "show", str(path)], capsys)
    assert code == 0 and "step 5" in out and "answer correct" in out
    code, out, _ = run_cli(["trace", "show", str(path), "--json"], capsys)
    assert code == 0 and json.loads(out)["question_id"] == trace.question_id

    code, out, _ = run_cli(["trace", "dot", str(path)], capsys)
    assert code == 0 and out == to_dot(trace)
    code, out, _ = run_cli(["trace", "mermaid", str(path), "-o", str(tmp_path / "g.mmd"), "--json"], capsys)
    assert code == 0
    info = json.loads(out)
    assert info["format"] == "mermaid" and info["path"] == str(tmp_path / "g.mmd")
    assert (tmp_path / "g.mmd").read_text() == to_mermaid(trace) == info["text"]


@pytest.mark.parametrize(
    "content, reason",
    [
        (None, "trace file not found"),
        ("{not json", "not a readable JSON trace"),
        (json.dumps({"version": 99}), "trace version 99"),
        (json.dumps({"version": 1, "question_id": "q"}), "not a valid trace"),
    ],
)
@pytest.mark.parametrize("command", ["html", "show", "dot", "mermaid"])
def test_cli_bad_trace_is_one_line_error(tmp_path, capsys, content, reason, command):
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(content)
    code, out, err = run_cli(["trace", command, str(path)], capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and reason in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "bad.html").exists()


def test_cli_missing_video_override_is_an_error(tmp_path, capsys):
    path = build_trace(with_thumbs=False).save(tmp_path / "q.json")
    code, _, err = run_cli(["trace", "html", str(path), "--video", str(tmp_path / "nope.mp4")], capsys)
    assert code == 2 and "nope.mp4: video not found" in err


@pytest.mark.parametrize("command", [[], ["html"], ["show"], ["dot"], ["mermaid"]])
def test_cli_help(command, capsys):
    code, out, _ = run_cli(["trace", *command, "--help"], capsys)
    assert code == 0
    assert "Usage" in out and "--help" in out
    if command:
        assert "trace_file" in out.lower() and "--json" in out


def test_frame_refs_round_trip_through_saved_traces(tmp_path):
    trace = build_trace()
    trace.nodes[1].frames.append(FrameRef(t=59.9, source="overview"))
    from agent.trace import Trace

    loaded = Trace.load(trace.save(tmp_path / "t.json"))
    assert render_trace_html(loaded) == render_trace_html(trace)


def test_page_shows_pixels_shown_and_cited_moments_never_seen():
    from tests.trace_samples import build_verdict_trace

    trace = build_verdict_trace()
    trace.answer.evidence = [31.0, 58.9]
    trace.answer.unseen_evidence = [58.9]
    html = render_trace_html(trace)
    chips = [c for c in parse(html).with_class("unseen") if "chip" in c.get("class", "")]
    assert len(chips) == 1 and "never seen" in html
    assert f"{trace.totals.pixels_shown / 1e6:.1f} Mpx" in html
    trace.answer.unseen_evidence = []
    trace.answer.evidence = [31.0]
    assert "never seen" not in render_trace_html(trace)
