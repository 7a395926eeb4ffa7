"""Measurements a phone-width browser test makes inside the page (JavaScript run by Playwright).

Kept apart from the tests so that every test that visits a page with a table can ask the same two
questions: does every table cell hold its longest word whole, and does anything but a table's own
scroll box stick out of the screen?
"""

from __future__ import annotations

# For every cell of every table in <main>: each word must lie on one line (a Range over it gives client rectangles of a single line), and the
# cell's content box must be at least as wide as the word set on its own without wrapping (a
# hidden, unwrapped copy of the word in the same parent element, so with the same font). A cell
# that wraps letter by letter fails both. Closed <details> are opened first, so tables folded away
# are measured as they would show. Every table must sit in a .table-scroll box that fits the screen.
# A word is what a reader takes for one: a run of non-space characters in one text node, except
# that a compound of letters joined by a hyphen ("sign-up") may break after its hyphen, as print
# does; a date or a number ("2026-12-02", "-3.5") may not break at all.
BROKEN_WORDS = r"""() => {
  document.querySelectorAll('details').forEach(d => { d.open = true; });
  const problems = [];
  const screen = document.documentElement.clientWidth;
  const tables = [...document.querySelectorAll('main table')];
  const px = v => parseFloat(v) || 0;
  const words = text => {
    const found = [];
    for (const match of text.matchAll(/\S+/g)) {
      let start = 0;
      for (let i = 1; i < match[0].length - 1; i++) {
        if (match[0][i] === '-' && /\p{L}/u.test(match[0][i - 1]) && /\p{L}/u.test(match[0][i + 1])) {
          found.push([match.index + start, match[0].slice(start, i + 1)]);
          start = i + 1;
        }
      }
      found.push([match.index + start, match[0].slice(start)]);
    }
    return found;
  };
  const unbroken = (parent, word) => {
    const probe = document.createElement('span');
    probe.textContent = word;
    probe.style.cssText = 'position:absolute;visibility:hidden;white-space:nowrap;left:0;top:0';
    parent.appendChild(probe);
    const width = probe.getBoundingClientRect().width;
    probe.remove();
    return width;
  };
  for (const table of tables) {
    const name = `table.${table.className || '?'}`;
    const box = table.closest('.table-scroll');
    if (!box) { problems.push(`${name} is not inside a .table-scroll box`); continue; }
    const outer = box.getBoundingClientRect();
    if (outer.left < -0.5 || outer.right > screen + 0.5) {
      problems.push(`${name}'s scroll box sticks out of the screen (${outer.left} to ${outer.right})`);
    }
    for (const cell of table.querySelectorAll('th, td')) {
      const style = getComputedStyle(cell);
      const rect = cell.getBoundingClientRect();
      const left = rect.left + px(style.borderLeftWidth) + px(style.paddingLeft);
      const right = rect.right - px(style.borderRightWidth) - px(style.paddingRight);
      const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
      for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        for (const [start, word] of words(node.data)) {
          const range = document.createRange();
          range.setStart(node, start);
          range.setEnd(node, start + word.length);
          const lines = [...range.getClientRects()].filter(r => r.width > 0);
          if (!lines.length) continue;  // not rendered (hidden)
          const where = `${name} cell ${JSON.stringify(cell.innerText.slice(0, 40))}: ${JSON.stringify(word)}`;
          if (lines.some(r => Math.abs(r.top - lines[0].top) > 1)) {
            problems.push(`${where} is broken over ${lines.length} lines`);
          }
          const width = unbroken(node.parentElement, word);
          if (right - left + 0.5 < width) {
            problems.push(`${where} needs ${width.toFixed(1)} px, the cell has ${(right - left).toFixed(1)}`);
          }
          if (lines[0].left < left - 0.5 || lines[lines.length - 1].right > right + 0.5) {
            problems.push(`${where} sticks out of its cell`);
          }
        }
      }
    }
  }
  return {tables: tables.length, problems: problems.slice(0, 20)};
}"""

# The page as a whole must not scroll sideways: only a table's own .table-scroll box may. Returns
# the document's scroll width and, to explain a failure, the first elements that stick out that
# are not inside such a box.
SIDEWAYS = r"""() => {
  const screen = document.documentElement.clientWidth;
  const out = [...document.querySelectorAll('body *')]
    .filter(el => !el.closest('.table-scroll') || el.matches('.table-scroll'))
    .filter(el => el.getBoundingClientRect().right > screen + 0.5)
    .slice(0, 5)
    .map(el => `${el.tagName.toLowerCase()}.${el.className} right=${el.getBoundingClientRect().right}`);
  return {width: document.scrollingElement.scrollWidth, screen, out};
}"""

# The interval chart's end labels, with the table's low and high columns beside them, and whether
# each label lies inside the chart and clear of the other labels.
INTERVAL_LABELS = r"""() => {
  const svg = document.querySelector('svg.interval-chart');
  if (!svg) return null;
  const frame = svg.getBoundingClientRect();
  const labels = [...svg.querySelectorAll('text.chart-low, text.chart-high')];
  const boxes = labels.map(t => t.getBoundingClientRect());
  const inside = boxes.every(b => b.left >= frame.left - 0.5 && b.right <= frame.right + 0.5);
  const overlaps = boxes.some((a, i) => boxes.some((b, j) => j > i &&
    a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom));
  const rows = [...document.querySelectorAll('table.result-table tbody tr')]
    .map(tr => [...tr.querySelectorAll('td')].map(td => td.innerText.trim()));
  return {
    low: [...svg.querySelectorAll('text.chart-low')].map(t => t.textContent.trim()),
    high: [...svg.querySelectorAll('text.chart-high')].map(t => t.textContent.trim()),
    table_low: rows.map(r => r[1]),
    table_high: rows.map(r => r[2]),
    inside,
    overlaps,
  };
}"""


def check_tables(page, path: str, *, tables: int) -> None:
    """Open ``path`` and assert that its tables keep every word whole and that nothing but their
    scroll boxes leaves the screen; ``tables`` is how many tables the page must show at least
    (so that a page whose data went missing cannot pass by having nothing to measure)."""
    page.goto(path)
    measured = page.evaluate(BROKEN_WORDS)
    assert measured["tables"] >= tables, f"{path} shows {measured['tables']} tables, expected {tables}"
    assert measured["problems"] == [], f"{path} at {page.viewport_size['width']} px: {measured['problems']}"
    sideways = page.evaluate(SIDEWAYS)
    assert sideways["width"] <= sideways["screen"], f"{path} scrolls sideways: {sideways}"
