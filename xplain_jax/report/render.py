"""Sections of a report rendered as a self-contained HTML page or as Markdown.

A section is ``(name, blocks)``; a block is ``("p", text)``, ``("note", text)``,
``("list", items)``, ``("table", header, rows)`` or ``("figure", path, caption)``.
"""

import html
import os

from xplain_jax.report import tables

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;
 max-width:1100px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{border-bottom:2px solid #2a9d8f;padding-bottom:.2em}
h2{margin-top:1.8em;color:#264653;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.8em 0;font-size:.95em;display:block;max-width:100%;
 overflow-x:auto}
th,td{border:1px solid #ccc;padding:.3em .7em;text-align:right}
th{background:#f1f5f4}td:first-child,th:first-child{text-align:left}
tr:nth-child(even) td{background:#fafafa}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.9em;color:#444;white-space:pre-line}
.note{background:#fff8e6;border-left:4px solid #e9c46a;padding:.4em .8em}
"""


def render_html(sections, title):
  """Renders sections as a self-contained HTML page (PNGs linked)."""
  esc = html.escape
  out = ["<!DOCTYPE html><html><head><meta charset='utf-8'>",
         f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
         f"<h1>{esc(title)}</h1>"]
  for name, blocks in sections:
    out.append(f"<h2>{esc(name)}</h2>")
    for b in blocks:
      if b[0] == "p":
        out.append(f"<p>{esc(b[1])}</p>")
      elif b[0] == "note":
        out.append(f"<p class='note'>{esc(b[1])}</p>")
      elif b[0] == "list":
        out.append("<ul>" + "".join(f"<li>{esc(s)}</li>" for s in b[1])
                   + "</ul>")
      elif b[0] == "table":
        out.append(tables.table_html(b[1], b[2]))
      elif b[0] == "figure":
        src = esc(b[1].replace(os.sep, "/"))
        out.append(f"<figure><img src='{src}' alt='{esc(b[2][:80])}'>"
                   f"<figcaption>{esc(b[2])}</figcaption></figure>")
  out.append("</body></html>")
  return "\n".join(out)


def render_markdown(sections, title):
  """Renders sections as Markdown (same tables; PNGs linked)."""
  out = [f"# {title}"]
  for name, blocks in sections:
    out.append(f"\n## {name}\n")
    for b in blocks:
      if b[0] == "p":
        out.append(b[1] + "\n")
      elif b[0] == "note":
        out.append(f"> {b[1]}\n")
      elif b[0] == "list":
        out.append("\n".join(f"- {s}" for s in b[1]) + "\n")
      elif b[0] == "table":
        out.append(tables.table_markdown(b[1], b[2]) + "\n")
      elif b[0] == "figure":
        src = b[1].replace(os.sep, "/")
        lines = b[2].split("\n")
        out.append(f"![{lines[0]}]({src})\n")
        out.extend(f"    {s}" for s in lines[1:])
        if len(lines) > 1:
          out.append("")
  return "\n".join(out) + "\n"
