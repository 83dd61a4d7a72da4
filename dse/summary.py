"""Plans for people: layers folded by role across blocks, a formats histogram, totals, a next step.

A plan lists every layer (225 for Llama-2-7B). Layers whose names agree once their
integer parts are blanked out (``model.layers.*.self_attn.q_proj``) share a *role*;
each role is shown once with its majority format (by weights) over its block range,
and the layers that differ are listed as exceptions. dse.search, dse.show and
dse.compare print this; `--verbose` adds every layer.
"""
from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field

from dse.budget import SHOWN_UNITS, Shown
from dse.texttable import table as _table

MAX_EXCEPTION_LINES = 12
_INT = re.compile(r"^\d+$")


@dataclass
class Role:
    """Layers that share a name up to integer indices, in plan order."""

    template: str  # the name with integer parts as "*"
    label: str = ""  # shortest suffix that tells it from the other roles, e.g. "q_proj"
    layers: list = field(default_factory=list)
    index: list = field(default_factory=list)  # the integer parts of each layer's name

    def majority(self) -> str:
        """The format holding most of this role's weights (first in plan order on a tie)."""
        share: dict = {}
        for layer in self.layers:
            share[layer["format"]] = share.get(layer["format"], 0) + layer["params"]
        return max(share, key=lambda f: share[f])  # dicts keep insertion order: ties go to the first seen

    def where(self, subset=None) -> str:
        """`blocks 0-28`, `block 0 experts 3, 5`: the positions of `subset` (indices into layers)."""
        rows = [self.index[i] for i in (range(len(self.layers)) if subset is None else subset)]
        if not self.index or not self.index[0]:
            return ""
        dims = [d for d in range(len(self.index[0])) if d == 0 or len({ix[d] for ix in self.index}) > 1]
        if dims == [0]:
            return _plural("block", sorted({ix[0] for ix in rows}))
        names = _dim_names(self.template)
        full: dict = {}
        for ix in self.index:
            full.setdefault(ix[0], set()).add(tuple(ix[d] for d in dims[1:]))
        picked: dict = {}
        for ix in rows:
            picked.setdefault(ix[0], set()).add(tuple(ix[d] for d in dims[1:]))
        inner_names = [names[d] for d in dims[1:]]
        groups: dict = {}  # inner positions -> blocks
        for block, inner in picked.items():
            key = f"all {'/'.join(inner_names)}" if inner == full[block] else _inner(inner, inner_names)
            groups.setdefault(key, []).append(block)
        if subset is None and len(groups) == 1:  # the whole role: say its extent
            every = set().union(*full.values())
            return f"{_plural('block', sorted(full))}, {_inner(every, inner_names)}"
        return "; ".join(f"{_plural('block', sorted(b))} {k}" for k, b in groups.items())


def _dim_names(template: str) -> list[str]:
    """The word before each "*": `...experts.*.w1` names its second index "experts"."""
    parts = template.split(".")
    return ["block" if n == 0 else (parts[i - 1] if i else "index")
            for n, i in enumerate(i for i, p in enumerate(parts) if p == "*")]


def _inner(inner: set, names: list[str]) -> str:
    if len(names) == 1:
        return f"{names[0]} {ranges(sorted(v[0] for v in inner))}"
    return f"{'/'.join(names)} " + ", ".join(".".join(map(str, v)) for v in sorted(inner))


def ranges(values: list[int]) -> str:
    """[0, 1, 2, 5, 7, 8] -> "0-2, 5, 7-8"."""
    out, start = [], None
    for i, v in enumerate(values):
        if start is None:
            start = v
        if i + 1 == len(values) or values[i + 1] != v + 1:
            out.append(f"{start}" if start == v else f"{start}-{v}")
            start = None
    return ", ".join(out)


def _plural(word: str, values: list[int]) -> str:
    return f"{word}{'s' if len(values) > 1 else ''} {ranges(values)}"


def split_name(name: str) -> tuple[str, tuple]:
    """`model.layers.3.mlp.up_proj` -> ("model.layers.*.mlp.up_proj", (3,))."""
    parts = name.split(".")
    ints = tuple(int(p) for p in parts if _INT.match(p))
    return ".".join("*" if _INT.match(p) else p for p in parts), ints


def roles(layers: list[dict]) -> list[Role]:
    """Group a plan's layers by role (first appearance order), each labelled by its shortest unique suffix."""
    by_template: dict = {}
    for layer in layers:
        template, ints = split_name(str(layer["name"]))
        role = by_template.setdefault(template, Role(template))
        role.layers.append(layer)
        role.index.append(ints)
    words = {t: [p for p in t.split(".") if p != "*"] for t in by_template}
    for template, role in by_template.items():
        for k in range(1, len(words[template]) + 1):
            suffix = words[template][-k:]
            if all(other[-k:] != suffix for t, other in words.items() if t != template):
                break
        role.label = ".".join(words[template][-k:]) or template
    return list(by_template.values())


def fold(layers: list[dict]) -> dict:
    """{"rules": [...], "exceptions": [...]}: each rule is a block range, its roles and their majority format;
    each exception the layers of a role that took another format."""
    rules: dict = {}
    exceptions: dict = {}
    for role in roles(layers):
        major = role.majority()
        rules.setdefault((role.where(), major), []).append(role)
        others: dict = {}
        for i, layer in enumerate(role.layers):
            if layer["format"] != major:
                others.setdefault(layer["format"], []).append(i)
        for fmt, subset in others.items():
            exceptions.setdefault((role.where(subset), fmt), []).append((role, subset))
    return {
        "rules": [{"where": w, "roles": [r.label for r in rs], "format": f,
                   "bits": _mean_bits([l for r in rs for l in r.layers if l["format"] == f]),
                   "layers": sum(len(r.layers) for r in rs)} for (w, f), rs in rules.items()],
        "exceptions": [{"where": w, "roles": [r.label for r, _ in rs], "format": f,
                        "bits": _mean_bits([r.layers[i] for r, s in rs for i in s]),
                        "layers": sum(len(s) for _, s in rs)} for (w, f), rs in exceptions.items()],
    }


def _mean_bits(layers: list[dict]) -> float:
    """Effective bits averaged by weights: a format's bits depend on the row length (partial groups)."""
    params = sum(l["params"] for l in layers)
    return sum(l["bits"] * l["params"] for l in layers) / params if params else float(layers[0]["bits"])


def format_shares(layers: list[dict]) -> list[dict]:
    """[{"format", "bits", "share"}] by weight share, largest first."""
    by_format: dict = {}
    for layer in layers:
        by_format.setdefault(layer["format"], []).append(layer)
    params = {f: sum(l["params"] for l in ls) for f, ls in by_format.items()}
    total = sum(params.values()) or 1
    return [{"format": f, "bits": _mean_bits(by_format[f]), "share": p / total}
            for f, p in sorted(params.items(), key=lambda kv: -kv[1])]


def limit_text(kind: str, si: float, budget: dict) -> str:
    """A limit in the unit the user typed: the budget's own text, else ms / mJ / GB / bits."""
    if budget.get("kind") == kind and budget.get("text"):
        return str(budget["text"])
    shown = SHOWN_UNITS.get(kind, Shown("", 1.0, kind))
    return f"{si * shown.factor:g}{shown.unit}"


def workload_text(workload: dict) -> str:
    """`decode, batch 1, seq 2048, KV cache 16-bit` (keys this version does not know are shown as written)."""
    if workload.get("description"):
        return str(workload["description"])
    known = {"phase": "{}", "batch": "batch {}", "seq": "seq {}", "kv_bits": "KV cache {}-bit"}
    parts = [known[k].format(workload[k]) for k in known if workload.get(k) is not None]
    parts += [f"{k} {v}" for k, v in workload.items() if k not in known and isinstance(v, (str, int, float))]
    return ", ".join(parts)


def error_text(plan: dict) -> str:
    """What the error number measures, from the sensitivity that produced it."""
    source = plan.get("provenance", {}).get("sensitivity", "?")
    what = {"prior": "sum of params x relative MSE, expected by the prior",
            "weights": "sum of params x relative MSE of the weights"}.get(source, f"sum over layers ({source})")
    return f"{what}; lower is better"


def _bound_share(layers: list[dict]) -> str:
    time: dict = {}
    for layer in layers:
        if layer.get("bound"):
            time[layer["bound"]] = time.get(layer["bound"], 0.0) + layer["latency_s"]
    total = sum(time.values())
    if not total:
        return ""
    bound = max(time, key=time.get)
    return f"{bound}-bound: {100 * time[bound] / total:.0f} % of searched-layer time"


def format_summary(plan: dict, steps: list[str] | None = None) -> str:
    """The plan in under a screen: header, roles with exceptions, formats, totals, next step.

    `steps`: the next-step lines (as next_steps() makes them; [] for none; None: next_steps(None, plan=plan)).
    """
    layers = plan["layers"]
    budget = plan.get("budget", {})
    solver = plan.get("solver", {})
    prov = plan.get("provenance", {})
    gap = solver.get("gap")
    lines = [f"{plan['model']} on {plan['hardware']}: {workload_text(plan.get('workload', {}))}",
             f"budget {budget.get('text', '?')}, method {plan.get('method', '?')}: {solver.get('status', '?')}"
             + (f" (gap {gap:.2g})" if isinstance(gap, (int, float)) else "")
             + (f", {solver['seconds']:.2f} s" if isinstance(solver.get("seconds"), (int, float)) else ""),
             f"sensitivity {prov.get('sensitivity', '?')}{' (data-free)' if prov.get('sensitivity_is_prior') else ''}: "
             + (prov.get("sensitivity_description") or "no description in the plan").removeprefix("data-free prior: "),
             *[line for note in plan.get("notes") or [] for line in
               textwrap.wrap(f"note: {note}", width=96, subsequent_indent="  ")],
             "", f"{len(layers)} searched layers by role (majority format by weights; exceptions below)"]
    if plan.get("pipeline"):  # a text-to-image pipeline: its stages instead of roles across blocks
        from dse.diffusion import stage_lines

        lines[-1] = f"{len(layers)} searched layers by stage (time and energy per image, attention included)"
        lines += stage_lines(plan)
    folded = fold(layers) if not plan.get("pipeline") else {"rules": [], "exceptions": []}
    exc = folded["exceptions"]
    shown = exc[:MAX_EXCEPTION_LINES]
    rows = [[r["where"] or "once", ", ".join(r["roles"]), r["format"], f"{r['bits']:.3f} bits"]
            for r in folded["rules"] + shown]
    table = _table(rows) if rows else []
    lines += table[:len(folded["rules"])]
    if exc:
        lines.append(f"exceptions ({sum(e['layers'] for e in exc)} layers)")
        lines += table[len(folded["rules"]):]
        if len(exc) > len(shown):
            lines.append(f"  ... {len(exc) - len(shown)} more: --verbose lists every layer")
    lines += ["", "formats by weight share"]
    lines += _table([[s["format"], f"{s['bits']:.3f} bits", f"{100 * s['share']:5.1f} %",
                      "#" * max(1, round(40 * s["share"]))] for s in format_shares(layers)])
    lines += ["", "totals (searched layers + fixed part)"] + _totals(plan)
    if plan.get("pipeline"):
        from dse.diffusion import image_line

        lines.append(image_line(plan))
    steps = next_steps(None, plan=plan) if steps is None else steps
    if steps:
        lines += ["", *steps]
    return "\n".join(lines)


def _totals(plan: dict) -> list[str]:
    t, fx = plan["totals"], plan.get("fixed", {})
    budget = plan.get("budget", {})
    limits = budget.get("limits", {})
    device = plan.get("device", {}) or {}

    binds = budget.get("binding")

    def limit(kind: str) -> str:
        """The user's limit of this kind, and the limit that binds where that is another (the device's memory)."""
        if binds is not None:  # the plan says which limits bind
            from dse.serving import binding_text

            own = [b for b in binds if b["kind"] == kind]
            user = kind in limits and not any(b["source"] == "device" and b["limit"] == limits[kind] for b in own)
            shown = [f"limit {limit_text(kind, limits[kind], budget)}" + (" (binding)" if any(
                b["source"] != "device" for b in own) else "")] if user else []
            device = [f"{binding_text(b, budget)} (binding)" for b in own if b["source"] == "device"]
            if device and not user and budget.get("kind") == kind:  # the user's limit was looser than the device
                shown.append(f"limit {budget.get('text')}")
            shown += device
            return "   ".join(shown)
        if kind not in limits:
            return ""
        key = SHOWN_UNITS[kind].key
        binding = t.get(key, 0) >= limits[kind] * (1 - 1e-3)
        return f"limit {limit_text(kind, limits[kind], budget)}" + (" (binding)" if binding else "")

    cap = device.get("memory_capacity_bytes")
    free = device.get("free_for_weights_bytes")
    n = device.get("devices", 1)
    room = (f"the {free / 1e9:.2f} GB {plan['hardware']} leaves for weights" if isinstance(free, (int, float)) and n == 1
            else f"the {free / 1e9:.2f} GB {n} x {plan['hardware']} leave for weights" if isinstance(free, (int, float))
            else f"{plan['hardware']}'s {cap / 1e9:.0f} GB" if cap else "")
    fits = "" if not room else ("fits " if device.get("weights_fit") else "exceeds ") + room
    rows = [["bits/weight", f"{t['effective_bits']:.3f}", "", limit("bits")],
            ["memory", _bytes(t["memory_bytes"]), f"fixed {_bytes(fx['memory_bytes'])}" if "memory_bytes" in fx else "",
             "   ".join(s for s in (limit("memory"), fits) if s)],
            ["latency", f"{t['latency_s'] * 1e3:.3f} ms", _fixed(fx, "latency_s", 1e3, "ms"),
             "   ".join(s for s in (limit("latency"), _bound_share(plan["layers"])) if s)],
            ["energy", f"{t['energy_j'] * 1e3:.2f} mJ", _fixed(fx, "energy_j", 1e3, "mJ"), limit("energy")],
            *serving_rows(plan, limit),
            ["error", f"{t['error']:.4g}", "", ""]]
    lines = _table(rows)
    lines[-1] += f"  {error_text(plan)}"
    if fx.get("note"):
        lines += textwrap.wrap(f"fixed part: {fx['note']}", width=96, initial_indent="  ", subsequent_indent="    ")
    return lines


def serving_rows(plan: dict, limit=lambda kind: "") -> list[list[str]]:
    """tokens/s of every decoder plan; time to first token and per output token of a whole request
    (a decode step's TPOT is its latency, a prefill's TTFT too: the plan's totals carry them)."""
    t, rows = plan["totals"], []
    what = {"decode": "output tokens of one step", "prefill": "prompt tokens", "generate": "output tokens"}
    phase = plan.get("workload", {}).get("phase", "")
    if isinstance(t.get("tokens_per_s"), (int, float)):
        rows.append(["tokens/s", f"{t['tokens_per_s']:,.1f}", "",
                     "   ".join(s for s in (limit("throughput"), what.get(phase, "")) if s)])
    for key, kind, label in (("ttft_s", "ttft", "TTFT"), ("tpot_s", "tpot", "TPOT")):
        if isinstance(t.get(key), (int, float)) and (phase == "generate" or limit(kind)):
            rows.append([label, f"{t[key] * 1e3:.3f} ms", "", "   ".join(
                s for s in (limit(kind), "time to first token" if kind == "ttft" else "time per output token") if s)])
    return rows


def _bytes(n: float) -> str:
    return f"{n / 1e9:.3f} GB" if n >= 1e8 else f"{n / 1e6:.2f} MB"


def _fixed(fx: dict, key: str, factor: float, unit: str) -> str:
    if not isinstance(fx.get(key), (int, float)):
        return ""
    return f"fixed {fx[key] * factor:.{2 if unit == 'mJ' else 3}f} {unit}"


def next_steps(out: str | None, written: bool = True, plan: dict | None = None) -> list[str]:
    """What to do with the plan (lines start with a label, so a README quoting them runs no command).

    written: the plan was just written to `out` (dse.show names a plan file that was there already).
    plan: the export suggested is one that writes this plan as it is (its deployment target, else
    the first exporter that needs no --nearest); none is suggested when no exporter can."""
    from dse.export.base import export_for

    path = out or "plan.json"
    target = export_for(plan) if plan is not None else "llamacpp"
    return [f"plan written to {out}; next:" if out and written else "next:",
            *([] if out else ["  keep the plan:    add --out plan.json"]),
            f"  every layer:      python -m dse.show {path} --verbose   (--plot plan.png draws it)",
            *([f"  quantizer config: python -m dse.export --plan {path} --to {target}"] if target else [])]


def format_layers(plan: dict) -> str:
    """Every layer, one line each (`--verbose`)."""
    rows = [["layer", "format", "bits", "latency us", "energy mJ", "memory MB", "bound"]]
    for layer in plan["layers"]:
        rows.append([str(layer["name"]), layer["format"], f"{layer['bits']:.3f}", f"{layer['latency_s'] * 1e6:.2f}",
                     f"{layer['energy_j'] * 1e3:.4f}", f"{layer.get('memory_bytes', 0) / 1e6:.2f}",
                     str(layer.get("bound", ""))])
    return "\n".join(_table(rows))
