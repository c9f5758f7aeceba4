/* tip-decode view: the page's script. It draws what the data says and computes nothing about
   thoughts: every thought, switch and verdict was computed in Python by tip-decode's analysis (the
   same as `tip-decode analyze`). Problems are decoded from their compressed element only when opened,
   and a thought's text is drawn only when it is expanded, so large runs stay fast. */
(function () {
  "use strict";

  var SWITCH_WORD = 1, PENALISED = 2;
  var EXPAND_CHARS = 6000;      // a sample whose shown text is shorter opens with every thought expanded
  var PREVIEW_CHARS = 140;
  var MAX_DEFAULT_CONFIGS = 4;  // configurations shown side by side at first (more can be ticked)

  var data = JSON.parse(document.getElementById("tip-index").textContent);
  var configs = data.configs;
  var problems = data.problems;
  var detailCache = new Map();

  var state = {
    shown: [],
    a: null,
    b: null,
    outcome: "all",
    query: "",
    sortKey: "order",
    sortDir: 1,
    rows: [],
    current: null,
    sample: 0,
    expanded: null
  };

  // ------------------------------------------------------------------ helpers

  function $(id) { return document.getElementById(id); }

  function esc(text) {
    return String(text).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }

  function fmt(value, digits) {
    if (value === null || value === undefined || (typeof value === "number" && !isFinite(value))) return "n/a";
    if (typeof value !== "number") return String(value);
    return Number.isInteger(value) ? String(value) : value.toFixed(digits === undefined ? 2 : digits);
  }

  function plural(n, one, many) { return n + " " + (n === 1 ? one : (many || one + "s")); }

  function accuracy(cell) { return cell && cell.g ? cell.ok / cell.g : null; }

  var collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });

  // ------------------------------------------------------------------ overview

  function renderOverview() {
    $("title").textContent = data.title;
    document.title = data.title + " · tip-decode view";
    $("source").textContent = data.source;
    var html = "";
    if (data.settings.length) {
      html += '<details class="card" open><summary>Run settings</summary><dl class="settings">';
      data.settings.forEach(function (pair) {
        html += "<div><dt>" + esc(pair[0]) + "</dt><dd>" + esc(pair[1]) + "</dd></div>";
      });
      html += "</dl></details>";
    }
    data.tables.forEach(function (table) {
      html += '<details class="card" open><summary>' + esc(table.title) + "</summary>";
      if (table.note) html += '<p class="note">' + esc(table.note) + "</p>";
      html += '<div class="table-wrap"><table class="summary"><thead><tr>';
      table.headers.forEach(function (h) { html += "<th>" + esc(h) + "</th>"; });
      html += "</tr></thead><tbody>";
      table.rows.forEach(function (row) {
        html += "<tr>" + row.map(function (v, i) { return (i ? "<td>" : "<th scope=\"row\">") + esc(v) + (i ? "</td>" : "</th>"); }).join("") + "</tr>";
      });
      html += "</tbody></table></div></details>";
    });
    var notes = data.notes.slice();
    configs.forEach(function (c) {
      c.notes.forEach(function (n) { notes.push(c.name + ": " + n); });
    });
    if (notes.length) {
      html += '<div class="card notes"><ul>' + notes.map(function (n) { return "<li>" + esc(n) + "</li>"; }).join("") + "</ul></div>";
    }
    if (data.legend.length) {
      html += '<details class="card legend"><summary>What the columns mean</summary><dl>';
      data.legend.forEach(function (pair) { html += "<dt>" + esc(pair[0]) + "</dt><dd>" + esc(pair[1]) + "</dd>"; });
      html += "</dl></details>";
    }
    $("overview").innerHTML = html;
    var t = data.totals;
    $("footer").textContent = plural(t.problems, "problem") + " · " + plural(configs.length, "configuration") + " · " +
      plural(t.responses, "response") + " · " + plural(t.thoughts, "thought") + " · " + data.generator;
  }

  // ------------------------------------------------------------------ controls

  function setupControls() {
    var n = configs.length;
    var base = data.baseline !== null ? data.baseline : 0;
    state.a = base;
    state.b = n > 1 ? (base === 0 ? 1 : 0) : null;
    var order = [base].concat(configs.map(function (_, i) { return i; }).filter(function (i) { return i !== base; }));
    state.shown = order.slice(0, MAX_DEFAULT_CONFIGS).sort(function (x, y) { return x - y; });

    var options = configs.map(function (c, i) { return '<option value="' + i + '">' + esc(c.name) + "</option>"; }).join("");
    $("compare-a").innerHTML = options;
    $("compare-b").innerHTML = options;
    $("compare-a").value = String(state.a);
    if (state.b !== null) $("compare-b").value = String(state.b);
    $("compare-a-field").hidden = n < 2;
    $("compare-b-field").hidden = n < 2;
    fillOutcomes();

    $("chips").innerHTML = configs.map(function (c, i) {
      return '<label class="chip" title="' + esc(c.settings) + '"><input type="checkbox" value="' + i + '"' +
        (state.shown.indexOf(i) >= 0 ? " checked" : "") + "> " + esc(c.name) + "</label>";
    }).join("");
    $("chips").addEventListener("change", function (e) {
      var i = Number(e.target.value);
      if (e.target.checked) state.shown.push(i); else state.shown = state.shown.filter(function (x) { return x !== i; });
      if (!state.shown.length) { state.shown = [i]; e.target.checked = true; }
      state.shown.sort(function (x, y) { return x - y; });
      renderHead();
      renderRows();
      if (state.current !== null) renderProblem();
    });
    $("search").addEventListener("input", function (e) { state.query = e.target.value.trim().toLowerCase(); renderRows(); });
    $("outcome").addEventListener("change", function (e) { state.outcome = e.target.value; renderRows(); });
    $("compare-a").addEventListener("change", function (e) { state.a = Number(e.target.value); fillOutcomes(); renderRows(); });
    $("compare-b").addEventListener("change", function (e) { state.b = Number(e.target.value); fillOutcomes(); renderRows(); });
  }

  function fillOutcomes() {
    var choices;
    if (state.b === null) {
      choices = [["all", "all problems"], ["right", "right"], ["wrong", "wrong"], ["ungraded", "ungraded"]];
    } else {
      var a = configs[state.a].name, b = configs[state.b].name;
      choices = [
        ["all", "all problems"],
        ["gained", "wrong with " + a + ", right with " + b],
        ["lost", "right with " + a + ", wrong with " + b],
        ["differ", "different outcome"],
        ["both-right", "right with both"],
        ["both-wrong", "wrong with both"]
      ];
    }
    var keep = state.outcome;
    $("outcome").innerHTML = choices.map(function (c) { return '<option value="' + c[0] + '">' + esc(c[1]) + "</option>"; }).join("");
    state.outcome = choices.some(function (c) { return c[0] === keep; }) ? keep : "all";
    $("outcome").value = state.outcome;
  }

  // ------------------------------------------------------------------ the table

  var METRICS = [
    { key: "ok", label: "correct", title: "graded correct (samples correct / graded when a problem has several)" },
    { key: "sw", label: "switches", title: "thought switches per response" },
    { key: "ut", label: "UT", title: "underthinking score of the incorrect responses (n/a when correct)" },
    { key: "tok", label: "tokens", title: "generated tokens per response" }
  ];

  function renderHead() {
    var top = '<tr><th rowspan="2" class="sortable" data-sort="id">id</th><th rowspan="2" class="sortable text-col" data-sort="text">problem</th>';
    var sub = "<tr>";
    METRICS.forEach(function (m) {
      top += '<th colspan="' + state.shown.length + '" class="group" title="' + esc(m.title) + '">' + esc(m.label) + "</th>";
      state.shown.forEach(function (c) {
        sub += '<th class="sortable num" data-sort="' + m.key + ":" + c + '" title="' + esc(m.label + ", " + configs[c].name) + '">' + esc(configs[c].name) + "</th>";
      });
    });
    $("problems").tHead.innerHTML = top + "</tr>" + sub + "</tr>";
    markSort();
  }

  function markSort() {
    Array.prototype.forEach.call($("problems").tHead.querySelectorAll("th.sortable"), function (th) {
      var active = th.dataset.sort === state.sortKey;
      th.setAttribute("aria-sort", active ? (state.sortDir > 0 ? "ascending" : "descending") : "none");
    });
  }

  function sortValue(i, key) {
    var p = problems[i];
    if (key === "order") return i;
    if (key === "id") return p.id;
    if (key === "text") return p.text || "";
    var parts = key.split(":"), cell = p.c[Number(parts[1])];
    if (!cell) return null;
    if (parts[0] === "ok") return accuracy(cell);
    return cell[parts[0]];
  }

  function matches(i) {
    var p = problems[i];
    if (state.query && (p.id + " " + (p.text || "")).toLowerCase().indexOf(state.query) < 0) return false;
    if (state.outcome === "all") return true;
    var a = accuracy(p.c[state.a]);
    if (state.b === null) {
      if (state.outcome === "ungraded") return a === null;
      return a !== null && (state.outcome === "right" ? a > 0.5 : a <= 0.5);
    }
    var b = accuracy(p.c[state.b]);
    if (a === null || b === null) return false;
    switch (state.outcome) {
      case "gained": return b > a;
      case "lost": return b < a;
      case "differ": return b !== a;
      case "both-right": return a === 1 && b === 1;
      case "both-wrong": return a === 0 && b === 0;
    }
    return true;
  }

  function computeRows() {
    var rows = [];
    for (var i = 0; i < problems.length; i++) if (matches(i)) rows.push(i);
    var key = state.sortKey, dir = state.sortDir;
    if (key !== "order") {
      rows.sort(function (x, y) {
        var u = sortValue(x, key), v = sortValue(y, key);
        if (u === null || u === undefined) return (v === null || v === undefined) ? x - y : 1;   // unknown last
        if (v === null || v === undefined) return -1;
        var c = typeof u === "string" ? collator.compare(u, v) : u - v;
        return c ? c * dir : x - y;
      });
    } else if (dir < 0) {
      rows.reverse();
    }
    state.rows = rows;
  }

  function okCell(cell) {
    if (!cell) return '<td class="num missing" title="no response">·</td>';
    if (!cell.g) return '<td class="num ungraded" title="not graded">?</td>';
    if (cell.n === 1) return cell.ok ? '<td class="num ok" title="correct">✓</td>' : '<td class="num bad" title="wrong">✗</td>';
    var share = cell.ok / cell.g;
    return '<td class="num ' + (share === 1 ? "ok" : share === 0 ? "bad" : "mixed") + '" title="' + cell.ok + " of " + cell.g + ' graded samples correct">' + cell.ok + "/" + cell.g + "</td>";
  }

  function renderRows() {
    computeRows();
    var html = [];
    var shown = state.shown;
    state.rows.forEach(function (i) {
      var p = problems[i];
      var row = '<tr data-i="' + i + '" tabindex="0"><th scope="row" class="id">' + esc(p.id) + '</th><td class="text-col" title="' + esc(p.text || "") + '">' + esc(p.text || "") + "</td>";
      shown.forEach(function (c) { row += okCell(p.c[c]); });
      shown.forEach(function (c) { var cell = p.c[c]; row += '<td class="num">' + (cell ? fmt(cell.sw, 1) : "·") + "</td>"; });
      shown.forEach(function (c) { var cell = p.c[c]; row += '<td class="num' + (cell && cell.ut === null ? " dim" : "") + '">' + (cell ? (cell.ut === null ? "–" : cell.ut.toFixed(2)) : "·") + "</td>"; });
      shown.forEach(function (c) {
        var cell = p.c[c];
        row += '<td class="num' + (cell && cell.trunc ? " trunc" : "") + '"' + (cell && cell.trunc ? ' title="cut at the token limit"' : "") + ">" + (cell ? fmt(cell.tok, 0) : "·") + "</td>";
      });
      html.push(row + "</tr>");
    });
    $("problems").tBodies[0].innerHTML = html.join("");
    $("empty").hidden = state.rows.length > 0;
    $("count").textContent = state.rows.length === problems.length
      ? plural(problems.length, "problem")
      : state.rows.length + " of " + plural(problems.length, "problem");
    document.body.dataset.rows = String(state.rows.length);
  }

  function setupTable() {
    $("problems").tHead.addEventListener("click", function (e) {
      var th = e.target.closest("th.sortable");
      if (!th) return;
      var key = th.dataset.sort;
      if (state.sortKey === key) state.sortDir = -state.sortDir; else { state.sortKey = key; state.sortDir = 1; }
      markSort();
      renderRows();
    });
    var body = $("problems").tBodies[0];
    body.addEventListener("click", function (e) {
      var tr = e.target.closest("tr[data-i]");
      if (tr) location.hash = "#/p/" + tr.dataset.i;
    });
    body.addEventListener("keydown", function (e) {
      if (e.key === "Enter" && e.target.dataset.i !== undefined) location.hash = "#/p/" + e.target.dataset.i;
    });
  }

  // ------------------------------------------------------------------ one problem

  function loadDetail(i) {
    if (!detailCache.has(i)) {
      detailCache.set(i, (async function () {
        if (typeof DecompressionStream === "undefined") {
          throw new Error("this browser cannot decompress the page's data (it needs DecompressionStream: Chrome 80, Firefox 113, Safari 16.4 or newer)");
        }
        var text = $("tip-p" + i).textContent;
        var binary = atob(text);
        var bytes = new Uint8Array(binary.length);
        for (var k = 0; k < binary.length; k++) bytes[k] = binary.charCodeAt(k);
        var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
        return JSON.parse(await new Response(stream).text());
      })());
    }
    return detailCache.get(i);
  }

  function showList() {
    state.current = null;
    $("problem-view").hidden = true;
    $("problem-view").innerHTML = "";
    $("list-view").hidden = false;
    $("overview").hidden = false;
    document.body.dataset.view = "list";
    if (state.listScroll !== undefined) window.scrollTo(0, state.listScroll);
  }

  function showProblem(i, sample) {
    if (state.current === null) state.listScroll = window.scrollY;
    if (state.current !== i) state.expanded = null;
    state.current = i;
    state.sample = sample || 0;
    $("list-view").hidden = true;
    $("overview").hidden = true;
    $("problem-view").hidden = false;
    document.body.dataset.view = "problem";
    renderProblem();
    window.scrollTo(0, 0);
  }

  function neighbours(i) {
    var at = state.rows.indexOf(i);
    if (at < 0) return [null, null];
    return [at > 0 ? state.rows[at - 1] : null, at + 1 < state.rows.length ? state.rows[at + 1] : null];
  }

  function renderProblem() {
    var i = state.current, p = problems[i];
    var view = $("problem-view");
    view.dataset.loaded = "";
    var nb = neighbours(i);
    var at = state.rows.indexOf(i);
    var head = '<div class="pv-nav"><a class="button" href="#/">← All problems</a>' +
      '<span class="pv-pos">' + (at >= 0 ? "problem " + (at + 1) + " of " + state.rows.length : "") + "</span>" +
      '<a class="button' + (nb[0] === null ? " disabled" : "") + '" id="prev"' + (nb[0] === null ? "" : ' href="#/p/' + nb[0] + '"') + ' title="previous (k or ←)">↑ Previous</a>' +
      '<a class="button' + (nb[1] === null ? " disabled" : "") + '" id="next"' + (nb[1] === null ? "" : ' href="#/p/' + nb[1] + '"') + ' title="next (j or →)">↓ Next</a>' +
      '<button type="button" id="expand-all" class="button">Expand all</button></div>' +
      '<div class="pv-title"><h2>Problem <span class="mono">' + esc(p.id) + "</span></h2>" +
      (p.ref !== null && p.ref !== undefined ? '<span class="ref">reference answer <b class="mono">' + esc(p.ref) + "</b></span>" : "") +
      '<span id="sample-pick"></span></div><div id="pv-body"><p class="loading">Loading…</p></div>';
    view.innerHTML = head;
    $("expand-all").addEventListener("click", function () {
      state.expanded = !state.expandedNow;
      renderSample();
    });
    loadDetail(i).then(function (detail) {
      if (state.current !== i) return;
      state.detail = detail;
      if (state.sample >= detail.samples.length) state.sample = 0;
      renderSample();
    }).catch(function (err) {
      $("pv-body").innerHTML = '<p class="notice">Cannot show this problem: ' + esc(err.message) + "</p>";
      console.error(err);
    });
  }

  function renderSample() {
    var detail = state.detail, i = state.current;
    var samples = detail.samples;
    var pick = $("sample-pick");
    if (samples.length > 1) {
      pick.innerHTML = '<label class="field inline"><span>sample</span><select id="sample">' + samples.map(function (s, k) {
        return '<option value="' + k + '"' + (k === state.sample ? " selected" : "") + ">" + esc(s.sample) + "</option>";
      }).join("") + "</select></label>";
      $("sample").addEventListener("change", function (e) { state.sample = Number(e.target.value); state.expanded = null; renderSample(); });
    } else {
      pick.innerHTML = "";
    }
    var traces = samples[state.sample].traces;
    var size = 0;
    state.shown.forEach(function (c) {
      var t = traces[c];
      if (t) t.th.forEach(function (th) { size += th.t.length; });
    });
    var expand = state.expanded === null ? size <= EXPAND_CHARS : state.expanded;
    state.expandedNow = expand;
    $("expand-all").textContent = expand ? "Collapse all" : "Expand all";

    var html = "";
    var question = detail.text || detail.prompt;
    if (question) {
      html += '<details class="prompt"' + (question.length < 600 ? " open" : "") + "><summary>" + (detail.text ? "Problem" : "Prompt") + '</summary><pre class="text">' + esc(question) + "</pre></details>";
    }
    html += legend();
    html += '<div class="columns" style="--cols:' + state.shown.length + '">';
    state.shown.forEach(function (c) { html += column(c, traces[c], expand); });
    html += "</div>";
    $("pv-body").innerHTML = html;
    $("problem-view").dataset.loaded = String(i);
  }

  function legend() {
    var tip = state.shown.some(function (c) { return configs[c].tip; });
    return '<p class="legend-line"><span><mark class="sw">Wait</mark> switch word that opened a thought</span>' +
      (tip ? '<span><span class="pen">shaded</span> steps where TIP penalised switch words</span>' : "") +
      '<span class="key"><i class="seg correct"></i>on track <i class="seg correct abandoned"></i>on track, abandoned ' +
      '<i class="seg incorrect"></i>not on track <i class="seg unjudged"></i>unjudged</span></p>';
  }

  function verdict(ok) {
    if (ok === true) return '<span class="verdict ok">✓ correct</span>';
    if (ok === false) return '<span class="verdict bad">✗ wrong</span>';
    return '<span class="verdict ungraded">not graded</span>';
  }

  var STATUS_TEXT = { correct: "on track", incorrect: "not on track", unjudged: "unjudged" };

  function column(c, t, expand) {
    var cfg = configs[c];
    var html = '<article class="col" data-config="' + esc(cfg.name) + '"><header class="col-head"><h3>' + esc(cfg.name) + '</h3><p class="settings-text">' + esc(cfg.settings) + "</p>";
    if (!t) return html + '</header><p class="note">No response of this configuration for this sample.</p></article>';
    html += '<div class="facts">' + verdict(t.ok) +
      '<span>answer <b class="mono">' + esc(t.pred === null || t.pred === undefined ? "none" : t.pred) + "</b></span>" +
      "<span>" + plural(t.tok, "token") + "</span><span>" + plural(t.th.length, "thought") + "</span><span>" + plural(t.sw, "switch", "switches") + "</span>" +
      (t.ut !== null ? "<span>UT " + t.ut.toFixed(3) + "</span>" : "") +
      (t.finish === "length" ? '<span class="trunc-flag" title="the response stopped at the token limit">cut at the token limit</span>' : "") +
      "</div>";
    if (cfg.tip) {
      html += '<p class="tip-note"><span class="swatch pen"></span>TIP (α ' + esc(cfg.tip.alpha) + ", β " + cfg.tip.beta + ") penalised switch words at the shaded steps: the first " + cfg.tip.beta +
        " tokens of each thought. " + plural(t.pen || 0, "switch", "switches") + " sampled through the penalty.</p>";
    }
    html += timeline(t) + "</header>";
    if (t.before) html += '<div class="outside"><span class="outside-label">before the reasoning</span><pre class="text">' + esc(t.before) + "</pre></div>";
    if (!t.th.length) html += '<p class="note">No thoughts: this response has no reasoning block under the analysis\'s scope.</p>';
    html += '<ol class="thoughts">';
    t.th.forEach(function (th, k) { html += thought(c, k, th, expand); });
    html += "</ol>";
    if (t.after) html += '<div class="outside"><span class="outside-label">after the reasoning (the answer)</span><pre class="text">' + esc(t.after) + "</pre></div>";
    return html + "</article>";
  }

  function timeline(t) {
    if (!t.tok) return "";
    var html = '<div class="timeline" aria-hidden="true">';
    var at = 0;
    t.th.forEach(function (th) {
      if (th.a > at) html += '<span class="gap" style="flex-grow:' + (th.a - at) + '"></span>';
      html += '<span class="seg ' + th.s + (th.end && th.s === "correct" ? " abandoned" : "") + '" style="flex-grow:' + Math.max(th.n, 0.5) + '" title="thought ' + th.i + ": " + th.n + " tokens, " + STATUS_TEXT[th.s] + '"></span>';
      at = th.a + th.n;
    });
    if (t.tok > at) html += '<span class="gap" style="flex-grow:' + (t.tok - at) + '"></span>';
    return html + "</div>";
  }

  function thought(c, k, th, expand) {
    var onTrackAbandoned = th.end && th.s === "correct";
    var cls = "thought " + th.s + (onTrackAbandoned ? " abandoned" : "");
    var flags = "";
    if (onTrackAbandoned) flags += '<span class="flag abandoned-flag" title="a switch left this thought although it was on track">abandoned on track</span>';
    if (th.pre) flags += '<span class="flag premature" title="shorter than the premature threshold when a switch ended it">premature switch</span>';
    if (th.pen) flags += '<span class="flag pen-flag" title="the switch that ended this thought was sampled while TIP penalised it">switched through the penalty</span>';
    var trigger = th.tr ? '<span class="trigger">' + esc(th.tr) + "</span>" : '<span class="trigger first">start</span>';
    var preview = th.t.length > PREVIEW_CHARS ? th.t.slice(0, PREVIEW_CHARS) + "…" : th.t;
    var body = expand ? bodyHtml(th) : "";
    return '<li class="' + cls + '" data-c="' + c + '" data-k="' + k + '"><button type="button" class="th-head" aria-expanded="' + expand + '">' +
      '<span class="th-index">#' + th.i + "</span>" + trigger +
      '<span class="status ' + th.s + '">' + STATUS_TEXT[th.s] + "</span>" +
      '<span class="len">' + plural(th.n, "token") + "</span>" + flags +
      (th.cand.length ? '<span class="cands" title="candidate answers found in the thought">→ ' + esc(th.cand.join(", ")) + "</span>" : "") +
      "</button>" + '<div class="th-preview"' + (expand ? " hidden" : "") + ">" + esc(preview) + "</div>" +
      '<div class="th-body"' + (expand ? "" : " hidden") + ">" + body + "</div></li>";
  }

  function bodyHtml(th) {
    if (!th.runs) return '<pre class="text">' + esc(th.t) + "</pre>";
    var html = "", at = 0;
    th.runs.forEach(function (run) {
      var piece = esc(th.t.slice(at, at + run[0]));
      at += run[0];
      var cls = (run[1] & SWITCH_WORD ? "sw" : "") + (run[1] & PENALISED ? (run[1] & SWITCH_WORD ? " pen" : "pen") : "");
      html += cls ? (run[1] & SWITCH_WORD ? '<mark class="' + cls + '">' : '<span class="' + cls + '">') + piece + (run[1] & SWITCH_WORD ? "</mark>" : "</span>") : piece;
    });
    if (at < th.t.length) html += esc(th.t.slice(at));
    return '<pre class="text">' + html + "</pre>";
  }

  function setupProblemView() {
    $("problem-view").addEventListener("click", function (e) {
      var head = e.target.closest(".th-head");
      if (!head) return;
      var li = head.parentNode;
      var body = li.querySelector(".th-body");
      var open = head.getAttribute("aria-expanded") !== "true";
      if (open && !body.firstChild) {
        var t = state.detail.samples[state.sample].traces[Number(li.dataset.c)];
        body.innerHTML = bodyHtml(t.th[Number(li.dataset.k)]);   // drawn on first expand only
      }
      body.hidden = !open;
      li.querySelector(".th-preview").hidden = open;
      head.setAttribute("aria-expanded", String(open));
    });
    document.addEventListener("keydown", function (e) {
      if (state.current === null || e.target.tagName === "INPUT" || e.target.tagName === "SELECT" || e.metaKey || e.ctrlKey || e.altKey) return;
      var nb = neighbours(state.current);
      if ((e.key === "j" || e.key === "ArrowRight") && nb[1] !== null) location.hash = "#/p/" + nb[1];
      else if ((e.key === "k" || e.key === "ArrowLeft") && nb[0] !== null) location.hash = "#/p/" + nb[0];
      else if (e.key === "Escape") location.hash = "#/";
    });
    // Printing a problem prints every thought in full.
    window.addEventListener("beforeprint", function () {
      if (state.current === null || !state.detail) return;
      state.expanded = true;
      renderSample();
    });
  }

  // ------------------------------------------------------------------ routing

  function route() {
    var m = /^#\/p\/(\d+)$/.exec(location.hash);
    if (m && Number(m[1]) < problems.length) showProblem(Number(m[1]));
    else showList();
  }

  renderOverview();
  setupControls();
  setupTable();
  setupProblemView();
  renderHead();
  renderRows();
  window.addEventListener("hashchange", route);
  route();
  window.tipView = { readyMs: performance.now(), problems: problems.length, thoughts: data.totals.thoughts };
  document.body.dataset.state = "ready";
})();
