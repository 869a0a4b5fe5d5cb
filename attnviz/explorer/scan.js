/* attnviz scan explorer: one page for a whole scan (see attnviz/explorer/scan_page.py).
   Called once per widget as (function (uid) {...})(uid) after the kit (kit.js); everything it
   touches lives under #attnviz-<uid>, and its API is window.attnvizScanExplorer[uid]. */
(function (uid) {
  "use strict";
  var K = window.attnvizKit, W0 = K && K.widget(uid);
  if (!W0) return;
  var root = W0.root, D = W0.data, C = K.C, font = K.font, fmt = K.fmt, Axes = K.Axes;

  // ------------------------------------------------------------------ data
  var S = D.series, nSeries = S.names.length, scanned = D.scanned, nScan = scanned.length;
  var nHeads = D.stats.mean.length, spc = D.samples_per_col;
  var headL = [], headH = [], headOf = {};  // page head index <-> (layer, head); padding is not a head
  D.heads.forEach(function (n, l) { for (var h = 0; h < n; h++) { headOf[l + ":" + h] = headL.length; headL.push(l); headH.push(h); } });
  var qScores = K.typed(D.scores, Uint16Array), qNull = K.typed(D.null, Uint16Array);
  var periods = K.typed(D.periods, Float32Array), sim = K.typed(D.similarity, Float32Array);
  var truePeriod = K.typed(S.true_period, Float32Array), mae = K.typed(S.mae, Float32Array);
  var meanMae = K.typed(S.mean_mae, Float32Array), topPeriod = K.typed(S.top_period, Float32Array);
  var simLut = K.bytes(D.cmap_similarity);
  var clusterOf = D.cluster_of, posOf = [], scanPos = {}, i;
  var clusters = D.cluster_similarity.map(function () { return []; });  // members of each, in display order
  D.order.forEach(function (head, p) { posOf[head] = p; if (D.cluster_of[head] >= 0) clusters[D.cluster_of[head]].push(head); });
  scanned.forEach(function (s, j) { scanPos[s] = j; });
  var hasKnown = scanned.some(function (s) { return isFinite(truePeriod[s]); });
  var stat = D.stats, hasNull = !!qNull, MARK = "#7b2d8e";  // the table's selected series, wherever it is drawn
  var verdict = hasNull && stat.above_null.some(function (v) { return v !== null; });  // none under 10 series

  function label(k) { return D.layers[headL[k]] + ":" + headH[k]; }
  function known(v) { return v !== null && v !== undefined && isFinite(v); }
  function values(q, lo, hi, k) {  // one head's per-series values (scanned series, in order)
    var out = new Float64Array(nScan), s = (hi[k] - lo[k]) / 65535, base = k * nScan;
    for (var j = 0; j < nScan; j++) out[j] = lo[k] + q[base + j] * s;
    return out;
  }
  function num(v, d) { return known(v) ? v.toFixed(d) : "–"; }
  function ci(pair, d) { return "[" + num(pair[0], d) + ", " + num(pair[1], d) + "]"; }
  // one range for every head's histogram, so that heads compare at a glance
  var xlo = Math.min(0, Math.min.apply(null, D.score_lo.concat(D.null_lo || [])));
  var xhi = Math.max.apply(null, D.score_hi.concat(D.null_hi || []));
  if (!(xhi > xlo)) xhi = xlo + 1;

  // ------------------------------------------------------------------ elements and state
  var part = W0.part;
  var el = { png: part("png"), info: part("info"), grid: part("grid"), cluster: part("cluster"),
             dist: part("dist"), periods: part("periods"), sim: part("sim"), table: part("table"), tip: part("tip") };
  var tip = K.tipper(root, el.tip), geom = {};
  var state = { head: -1, layer: null, headIndex: null, label: null, mean: null, ci: null, nullMean: null, nullCi: null,
                diffCi: null, aboveNull: null, medianPeriod: null, scores: null, nullScores: null, periods: null,
                noPeriod: 0, recovered: null, cluster: null, series: null, sort: { key: null, dir: 1 },
                tableOrder: S.names.slice(), hover: null };

  // ------------------------------------------------------------------ the grid of mean scores
  function drawGrid() {
    geom.grid = K.headGrid(el.grid, {
      layers: D.layers, heads: D.heads, lut: K.bytes(D.cmap), key: "mean score",
      title: "mean periodicity score over " + D.compared + " series",
      note: "outline: selected head · dashed: its cluster",
      group: function (l, h) { var k = headOf[l + ":" + h], c = clusterOf[state.head]; return c >= 0 && k !== state.head && clusterOf[k] === c; },
      markLabel: verdict ? "above the null (paired t-test, BH q < 0.05)" : null, markColor: C.best,
      selected: [headL[state.head], headH[state.head]], best: null,
      value: function (l, h) { var v = stat.mean[headOf[l + ":" + h]]; return known(v) ? v : null; },
      mark: function (l, h) { return verdict && stat.above_null[headOf[l + ":" + h]] === true; }
    });
  }

  // ------------------------------------------------------------------ the head's scores over series
  function histogram(vals, lo, hi, bins) {
    var out = [], w = (hi - lo) / bins;
    for (var b = 0; b < bins; b++) out.push(0);
    for (var j = 0; j < vals.length; j++) {
      if (!isFinite(vals[j])) continue;
      out[Math.max(0, Math.min(bins - 1, Math.floor((vals[j] - lo) / w)))]++;
    }
    return out;
  }
  function bars(ctx, ax, counts, lo, w, color, alpha, outline) {
    ctx.save(); ax.clip(ctx);
    counts.forEach(function (c, b) {
      if (!c) return;
      var x0 = ax.sx(lo + b * w), x1 = ax.sx(lo + (b + 1) * w), y = ax.sy(c);
      if (outline) { ctx.strokeStyle = color; ctx.lineWidth = 1.4; ctx.strokeRect(x0 + 0.7, y + 0.7, x1 - x0 - 1.4, ax.y + ax.h - y); }
      else { ctx.globalAlpha = alpha; ctx.fillStyle = color; ctx.fillRect(x0 + 0.4, y, Math.max(0.6, x1 - x0 - 0.8), ax.y + ax.h - y); }
    });
    ctx.restore();
  }
  function stairs(ctx, ax, counts, lo, w, color) {  // a histogram's outline, as one step line
    ctx.save(); ax.clip(ctx); ctx.strokeStyle = color; ctx.lineWidth = 1.8; ctx.lineJoin = "miter"; ctx.beginPath();
    ctx.moveTo(ax.sx(lo), ax.sy(0));
    counts.forEach(function (c, b) { ctx.lineTo(ax.sx(lo + b * w), ax.sy(c)); ctx.lineTo(ax.sx(lo + (b + 1) * w), ax.sy(c)); });
    ctx.lineTo(ax.sx(lo + counts.length * w), ax.sy(0)); ctx.stroke(); ctx.restore();
  }
  function recovery(ps) {  // series with a known period, and those where this head is within tolerance
    var n = 0, within = 0;
    for (var j = 0; j < nScan; j++) {
      var tp = truePeriod[scanned[j]];
      if (!isFinite(tp)) continue;
      n++;
      if (isFinite(ps[j]) && Math.abs(ps[j] - tp) <= Math.max(spc, 0.08 * tp)) within++;
    }
    return { series: n, within: within };
  }
  function marker(ctx, ax, x) {  // the table's selected series, on a distribution
    var px = ax.sx(x);
    ctx.save(); ctx.fillStyle = MARK; K.tri(ctx, px, ax.y + ax.h - 1, 6); ctx.restore();
  }
  function drawDist() {
    var W = el.dist.clientWidth || 420, H = 300, left = 52, right = 14;
    var ctx = K.prep(el.dist, W, H), k = state.head;
    K.title(ctx, "score of " + label(k) + " over " + nScan + " series", W);
    var items = [{ label: "series' scores", color: C.blue, kind: "box", alpha: 0.75 },
                 { label: "mean, 95 % interval", color: C.blue }];
    if (hasNull) items.push({ label: "null (phase-randomised)", color: "#8d96a0", kind: "box", alpha: 0.45 });
    if (state.series !== null && scanPos[state.series] !== undefined) items.push({ label: S.names[state.series], color: MARK, kind: "tri" });
    var top = K.legend(ctx, 4, 26, W - 8, items) + 2;
    var rows = hasNull ? 2 : 1, fh = 16 * rows + 6;
    var fx = new Axes(left, top, W - left - right, fh, [xlo, xhi], [0, rows]);
    var bins = Math.max(10, Math.min(40, Math.round(Math.sqrt(nScan) * 2))), w = (xhi - xlo) / bins;
    var cs = histogram(state.scores, xlo, xhi, bins), cn = hasNull ? histogram(state.nullScores, xlo, xhi, bins) : [];
    var ymax = Math.max.apply(null, cs.concat(cn).concat([1]));
    var ax = new Axes(left, top + fh + 6, W - left - right, H - top - fh - 6 - 44, [xlo, xhi], [0, ymax * 1.08]);
    K.drawAxes(ctx, ax, { xlabel: "periodicity score", ylabel: "series", grid: true, ny: 4, ylabelGap: 40 });
    if (hasNull) bars(ctx, ax, cn, xlo, w, "#8d96a0", 0.45);
    bars(ctx, ax, cs, xlo, w, C.blue, 0.75);
    // the forest rows: mean with its interval (and the null's), on the histogram's x axis
    function interval(row, mean, pair, color, text) {
      var y = fx.y + 8 + 16 * row;
      ctx.save(); ctx.strokeStyle = color; ctx.lineWidth = 2.4; ctx.lineCap = "round";
      if (known(pair[0]) && known(pair[1])) { ctx.beginPath(); ctx.moveTo(fx.sx(pair[0]), y); ctx.lineTo(fx.sx(pair[1]), y); ctx.stroke(); }
      K.dot(ctx, fx.sx(mean), y, 4, color);
      ctx.font = font(10.5); ctx.fillStyle = color; ctx.textBaseline = "middle";
      var right = fx.sx(known(pair[1]) ? pair[1] : mean) + 8, tw = ctx.measureText(text).width;
      if (right + tw > W - 2) { ctx.textAlign = "right"; ctx.fillText(text, fx.sx(known(pair[0]) ? pair[0] : mean) - 8, y); }
      else { ctx.textAlign = "left"; ctx.fillText(text, right, y); }
      ctx.restore();
      K.vline(ctx, ax, mean, color, [4, 3], 1.2);
    }
    interval(0, state.mean, state.ci, C.blue, "mean " + num(state.mean, 3) + " " + ci(state.ci, 3));
    if (hasNull) interval(1, state.nullMean, state.nullCi, "#6b747f", "null " + num(state.nullMean, 3) + " " + ci(state.nullCi, 3));
    if (state.series !== null && scanPos[state.series] !== undefined) marker(ctx, ax, state.scores[scanPos[state.series]]);
    geom.dist = ax;
  }

  // ------------------------------------------------------------------ the head's periods over series
  function drawPeriods() {
    var W = el.periods.clientWidth || 420, H = 330, k = state.head, ps = state.periods;
    var ctx = K.prep(el.periods, W, H), found = [], knownP = [], j;
    for (j = 0; j < nScan; j++) {
      if (isFinite(ps[j])) found.push(ps[j]);
      if (isFinite(truePeriod[scanned[j]])) knownP.push(truePeriod[scanned[j]]);
    }
    state.recovered = hasKnown ? recovery(ps) : null;
    K.title(ctx, "detected period of " + label(k) + " over " + nScan + " series" +
            (state.noPeriod ? " (none found in " + state.noPeriod + ")" : ""), W);
    var items = [{ label: "detected", color: C.blue, kind: "box", alpha: 0.75 }];
    if (hasKnown) items.push({ label: "known period", color: C.green, lw: 1.8 });
    if (hasKnown) items.push({ label: "within max(1 column, 8 %): " + state.recovered.within + "/" + state.recovered.series, color: C.blue, kind: "dot" });
    if (hasKnown) items.push({ label: "outside", color: C.red, kind: "ring" });
    var sel = state.series !== null && scanPos[state.series] !== undefined ? scanPos[state.series] : null;
    if (sel !== null) items.push({ label: S.names[state.series], color: MARK, kind: hasKnown ? "dot" : "tri" });
    var top = K.legend(ctx, 4, 26, W - 8, items) + 6, bottom = 44;
    var pmax = Math.max.apply(null, found.concat(knownP).concat([spc]));
    var side = hasKnown ? Math.min(H - top - bottom, Math.round(W * 0.42)) : 0;
    // histogram in bins of one token column (the periods' resolution), wider when there are many
    var bw = spc, xr = [0, pmax * 1.04];
    while (xr[1] / bw > 48) bw *= 2;
    var bins = Math.ceil(xr[1] / bw); xr[1] = bins * bw;
    var cf = histogram(found, 0, xr[1], bins), ck = histogram(knownP, 0, xr[1], bins);
    var ymax = Math.max.apply(null, cf.concat(ck).concat([1]));
    var ax = new Axes(46, top, W - 46 - 10 - (side ? side + 58 : 0), H - top - bottom, xr, [0, ymax * 1.08]);
    K.drawAxes(ctx, ax, { xlabel: "period (samples)", ylabel: "series", grid: true, nx: 5, ny: 4, ylabelGap: 36 });
    bars(ctx, ax, cf, 0, bw, C.blue, 0.75);
    if (hasKnown) stairs(ctx, ax, ck, 0, bw, C.green);
    if (sel !== null && isFinite(ps[sel])) marker(ctx, ax, ps[sel]);
    geom.periods = ax;
    if (!hasKnown) return;
    // detected against known, series by series: on the diagonal = the head found the period
    var lim = [0, xr[1]], sx = new Axes(W - 10 - side, top, side, side, lim, lim);
    K.drawAxes(ctx, sx, { xlabel: "known period", ylabel: "detected", grid: true, nx: 4, ny: 4, ylabelGap: 36 });
    sx.clip(ctx);
    ctx.fillStyle = "rgba(2,158,115,0.13)"; ctx.beginPath();  // the tolerance band, max(one column, 8 %)
    for (var t = 0; t <= 40; t++) { var v = lim[1] * t / 40; ctx.lineTo(sx.sx(v), sx.sy(v + Math.max(spc, 0.08 * v))); }
    for (t = 40; t >= 0; t--) { v = lim[1] * t / 40; ctx.lineTo(sx.sx(v), sx.sy(v - Math.max(spc, 0.08 * v))); }
    ctx.fill();
    K.polyline(ctx, sx, lim, lim, C.green, 1.1, [4, 3]);
    for (j = 0; j < nScan; j++) {
      var tp = truePeriod[scanned[j]];
      if (!isFinite(tp) || !isFinite(ps[j])) continue;
      ctx.beginPath(); ctx.arc(sx.sx(tp), sx.sy(ps[j]), 2.6, 0, 2 * Math.PI);
      if (Math.abs(ps[j] - tp) <= Math.max(spc, 0.08 * tp)) { ctx.fillStyle = C.blue; ctx.fill(); }
      else { ctx.strokeStyle = C.red; ctx.lineWidth = 1.1; ctx.stroke(); }
    }
    if (sel !== null && isFinite(ps[sel]) && isFinite(truePeriod[scanned[sel]])) K.dot(ctx, sx.sx(truePeriod[scanned[sel]]), sx.sy(ps[sel]), 4.5, MARK);
    ctx.restore();
    geom.scatter = sx;
  }

  // ------------------------------------------------------------------ similarity of heads
  var simImage = null;
  function simCanvas() {  // one pixel per pair, in cluster order; undefined pairs light grey
    if (simImage) return simImage;
    var off = document.createElement("canvas"); off.width = nHeads; off.height = nHeads;
    var octx = off.getContext("2d"), img = octx.createImageData(nHeads, nHeads);
    for (var r = 0; r < nHeads; r++) for (var c = 0; c < nHeads; c++) {
      var v = sim[D.order[r] * nHeads + D.order[c]], p = 4 * (r * nHeads + c);
      if (isNaN(v)) { img.data[p] = 217; img.data[p + 1] = 221; img.data[p + 2] = 227; }
      else {
        var j = Math.max(0, Math.min(255, Math.round((v + 1) / 2 * 255))) * 3;
        img.data[p] = simLut[j]; img.data[p + 1] = simLut[j + 1]; img.data[p + 2] = simLut[j + 2];
      }
      img.data[p + 3] = 255;
    }
    octx.putImageData(img, 0, 0);
    simImage = off;
    return off;
  }
  var anyUndefined = false;
  for (i = 0; i < sim.length; i++) if (isNaN(sim[i])) { anyUndefined = true; break; }
  function drawSim() {
    var W = el.sim.clientWidth || 460, left = 30, right = 62;
    var side = Math.max(140, Math.min(W - left - right, 520)), ctx0 = document.createElement("canvas").getContext("2d"), top;
    var items = [{ label: "cluster (mean similarity ≥ " + fmt(D.threshold) + ")", color: C.ink, lw: 1 },
                 { label: "selected head and its cluster", color: C.sel, lw: 2 }];
    if (anyUndefined) items.push({ label: "undefined (a flat lag profile)", color: "#d9dde3", kind: "box" });
    top = K.legend(ctx0, 4, 26, W - 8, items) + 16;
    var H = top + side + 30, ctx = K.prep(el.sim, W, H), cell = side / nHeads;
    K.title(ctx, "head similarity: mean correlation of lag profiles, " + clusters.length + " clusters", W);
    K.legend(ctx, 4, 26, W - 8, items);
    var ax = new Axes(left, top, side, side, [0, nHeads], [0, nHeads], true);
    ctx.imageSmoothingEnabled = false; ctx.drawImage(simCanvas(), ax.x, ax.y, ax.w, ax.h); ctx.imageSmoothingEnabled = true;
    ctx.strokeStyle = C.ink; ctx.lineWidth = 1; ctx.strokeRect(ax.x - 0.5, ax.y - 0.5, ax.w + 1, ax.h + 1);
    var mine = clusterOf[state.head];
    ctx.font = font(10); ctx.textAlign = "center"; ctx.textBaseline = "bottom"; ctx.fillStyle = C.soft;
    clusters.forEach(function (members, c) {
      var p0 = Infinity, p1 = -Infinity;
      members.forEach(function (m) { p0 = Math.min(p0, posOf[m]); p1 = Math.max(p1, posOf[m]); });
      var x = ax.x + p0 * cell, s = (p1 - p0 + 1) * cell;
      ctx.strokeStyle = c === mine ? C.sel : C.ink; ctx.lineWidth = c === mine ? 2 : 0.9;
      ctx.strokeRect(x, ax.y + p0 * cell, s, s);
      if (s >= 14 || c === mine) { ctx.fillStyle = c === mine ? C.ink : C.soft; ctx.fillText("C" + (c + 1), x + s / 2, ax.y - 2); }
    });
    var ps = posOf[state.head];  // the selected head's row and column
    ctx.save(); ctx.strokeStyle = C.sel; ctx.lineWidth = 1; ctx.globalAlpha = 0.9;
    ctx.strokeRect(ax.x, ax.y + ps * cell, side, cell); ctx.strokeRect(ax.x + ps * cell, ax.y, cell, side);
    ctx.restore();
    ctx.save(); ctx.font = font(11); ctx.fillStyle = C.soft; ctx.translate(left - 10, ax.y + side / 2); ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "center"; ctx.textBaseline = "middle"; ctx.fillText("heads, ordered by cluster", 0, 0); ctx.restore();
    ctx.font = font(11); ctx.fillStyle = C.soft; ctx.textAlign = "center"; ctx.textBaseline = "top";
    ctx.fillText("heads, ordered by cluster (hover: the pair; click: select the row's head)", ax.x + side / 2, ax.y + side + 6);
    var cx = ax.x + side + 12, cw = 11;  // colour bar, -1..1
    for (var t = 0; t < side; t++) {
      var j = Math.round((1 - t / (side - 1)) * 255) * 3;
      ctx.fillStyle = "rgb(" + simLut[j] + "," + simLut[j + 1] + "," + simLut[j + 2] + ")"; ctx.fillRect(cx, ax.y + t, cw, 1.5);
    }
    ctx.strokeStyle = C.ink; ctx.strokeRect(cx + 0.5, ax.y + 0.5, cw, side);
    var cb = new Axes(cx, ax.y, cw, side, [0, 1], [-1, 1]);
    ctx.font = font(10.5); ctx.fillStyle = C.ink; ctx.textAlign = "left"; ctx.textBaseline = "middle";
    [-1, -0.5, 0, 0.5, 1].forEach(function (v) { ctx.fillText(fmt(v), cx + cw + 4, cb.sy(v)); });
    geom.sim = { ax: ax, cell: cell };
  }
  function simHit(ev) {
    var g = geom.sim, p = K.local(ev, el.sim);
    if (!g || !K.inside(g.ax, p)) return null;
    var r = Math.floor((p[1] - g.ax.y) / g.cell), c = Math.floor((p[0] - g.ax.x) / g.cell);
    if (r < 0 || r >= nHeads || c < 0 || c >= nHeads) return null;
    return [D.order[r], D.order[c]];
  }

  // ------------------------------------------------------------------ cluster, info, table
  function chip(k) {
    var b = document.createElement("button");
    b.type = "button"; b.textContent = label(k); b.setAttribute("data-head", String(k));
    if (k === state.head) b.className = "avx-sel";
    return b;
  }
  function showCluster() {
    var c = clusterOf[state.head], box = el.cluster;
    box.textContent = "";
    var head = document.createElement("p");
    if (c < 0) {
      head.textContent = label(state.head) + " is in no cluster: no group of heads whose lag profiles correlate with its own at " +
        fmt(D.threshold) + " or more on average.";
      box.appendChild(head);
      state.cluster = null;
      return;
    }
    var members = clusters[c], sorted = members.slice().sort(function (a, b) { return a - b; });
    var b = document.createElement("b"); b.textContent = "cluster C" + (c + 1);
    head.appendChild(b);
    head.appendChild(document.createTextNode(" · " + members.length + " heads · mean similarity " + num(D.cluster_similarity[c], 2) +
      " · click one to select it"));
    box.appendChild(head);
    var list = document.createElement("div"); list.className = "avx-chips";
    sorted.forEach(function (k) { list.appendChild(chip(k)); });
    box.appendChild(list);
    state.cluster = { id: c + 1, members: sorted.map(label), meanSimilarity: D.cluster_similarity[c] };
  }
  function infoText() {
    var k = state.head, t = label(k) + " · mean score " + num(state.mean, 3) + " " + ci(state.ci, 3);
    if (hasNull) t += " · null " + num(state.nullMean, 3) + " " + ci(state.nullCi, 3) + " · score − null " + ci(state.diffCi, 3) +
      (state.aboveNull === null ? ": " + D.above_null_rule : state.aboveNull ? ": above the null" : ": not above the null");
    t += " · median period " + (known(state.medianPeriod) ? num(state.medianPeriod, 1) + " samples" : "none");
    return t;
  }
  // columns of the series table: what a cell says, and the value it sorts by (null: last)
  var columns = [
    { key: "series", label: "series", left: true, value: function (s) { return S.names[s]; } },
    { key: "rows", label: "rows", value: function (s) { var m = /^(-?\d+)/.exec(S.rows[s]); return m ? +m[1] : (S.rows[s] || null); },
      text: function (s) { return S.rows[s]; } },
    { key: "status", label: "status", left: true, value: function (s) { return S.skipped[s] ? "skipped: " + S.reason[s] : "scanned"; } },
    { key: "known", label: "known period", value: function (s) { return isFinite(truePeriod[s]) ? truePeriod[s] : null; }, d: 1 },
    { key: "mae", label: "MAE", value: function (s) { return isFinite(mae[s]) ? mae[s] : null; }, d: 3,
      title: "forecast mean absolute error against the held-out truth (– : no truth)" },
    { key: "ratio", label: "÷ mean fc.", value: function (s) { return isFinite(mae[s]) && meanMae[s] > 0 ? mae[s] / meanMae[s] : null; }, d: 2,
      title: "MAE over the MAE of forecasting the history's mean" },
    { key: "top", label: "top head", left: true, value: function (s) { return S.top[s] >= 0 ? label(S.top[s]) : null; } },
    { key: "top_period", label: "its period", value: function (s) { return isFinite(topPeriod[s]) ? topPeriod[s] : null; }, d: 1 },
    { key: "score", label: "score", sel: true, d: 3,
      value: function (s) { return scanPos[s] === undefined ? null : state.scores[scanPos[s]]; } },
    { key: "period", label: "period", sel: true, d: 1,
      value: function (s) { var v = scanPos[s] === undefined ? NaN : state.periods[scanPos[s]]; return isFinite(v) ? v : null; } }
  ];
  function cellText(col, s) {
    if (col.text) return col.text(s);
    var v = col.value(s);
    if (v === null) return col.key === "period" && scanPos[s] !== undefined ? "none" : "–";
    return typeof v === "number" ? v.toFixed(col.d) : v;
  }
  var rowEls = [];
  function buildTable() {
    var thead = document.createElement("thead"), tr = document.createElement("tr"), tbody = document.createElement("tbody");
    columns.forEach(function (col) {
      var th = document.createElement("th");
      th.setAttribute("data-key", col.key);
      if (col.left) th.className = "avx-l";
      if (col.sel) th.className = "avx-selcol";
      if (col.title) th.title = col.title;
      tr.appendChild(th);
    });
    thead.appendChild(tr);
    for (var s = 0; s < nSeries; s++) {
      var row = document.createElement("tr");
      row.setAttribute("data-i", String(s));
      if (S.skipped[s]) row.className = "avx-skipped";
      columns.forEach(function (col) {
        var td = document.createElement("td");
        if (col.left) td.className = "avx-l";
        if (!col.sel) td.textContent = cellText(col, s);
        row.appendChild(td);
      });
      rowEls.push(row); tbody.appendChild(row);
    }
    el.table.appendChild(thead); el.table.appendChild(tbody);
    headerText();
  }
  function headerText() {
    var ths = el.table.querySelectorAll("th");
    columns.forEach(function (col, c) {
      var arrow = state.sort.key === col.key ? (state.sort.dir > 0 ? " ▲" : " ▼") : "";
      ths[c].textContent = (col.sel ? col.label + " (" + label(state.head) + ")" : col.label) + arrow;
    });
  }
  function fillHeadColumns() {
    var first = columns.length - 2;
    for (var s = 0; s < nSeries; s++) {
      rowEls[s].children[first].textContent = cellText(columns[first], s);
      rowEls[s].children[first + 1].textContent = cellText(columns[first + 1], s);
    }
  }
  function sortBy(key, dir) {
    var col = columns.filter(function (c) { return c.key === key; })[0];
    if (!col) throw new Error("no column " + key);
    state.sort = { key: key, dir: dir || (state.sort.key === key ? -state.sort.dir : 1) };
    var vals = [], s;
    for (s = 0; s < nSeries; s++) vals.push(col.value(s));
    var idx = [];
    for (s = 0; s < nSeries; s++) idx.push(s);
    idx.sort(function (a, b) {
      var va = vals[a], vb = vals[b];
      if (va === null || vb === null) return va === vb ? a - b : (va === null ? 1 : -1);  // unknown last
      var c = typeof va === "number" && typeof vb === "number" ? va - vb : String(va).localeCompare(String(vb), undefined, { numeric: true });
      return c ? c * state.sort.dir : a - b;
    });
    var tbody = el.table.tBodies[0];
    idx.forEach(function (s2) { tbody.appendChild(rowEls[s2]); });
    state.tableOrder = idx.map(function (s2) { return S.names[s2]; });
    headerText();
  }

  // ------------------------------------------------------------------ selecting
  function drawAll() { drawGrid(); drawDist(); drawPeriods(); drawSim(); }
  function selectHead(k) {
    if (!(k >= 0 && k < nHeads) || k !== Math.floor(k)) throw new Error("no head " + k + " (the scan has " + nHeads + ")");
    state.head = k; state.layer = headL[k]; state.headIndex = headH[k]; state.label = label(k);
    state.mean = stat.mean[k]; state.ci = [stat.lo[k], stat.hi[k]]; state.medianPeriod = stat.median_period[k];
    state.nullMean = hasNull ? stat.null_mean[k] : null; state.nullCi = hasNull ? [stat.null_lo[k], stat.null_hi[k]] : null;
    state.diffCi = hasNull ? [stat.diff_lo[k], stat.diff_hi[k]] : null; state.aboveNull = hasNull ? stat.above_null[k] : null;
    state.scores = values(qScores, D.score_lo, D.score_hi, k);
    state.nullScores = hasNull ? values(qNull, D.null_lo, D.null_hi, k) : null;
    state.periods = Array.prototype.slice.call(periods.subarray(k * nScan, (k + 1) * nScan));
    state.noPeriod = state.periods.filter(function (v) { return !isFinite(v); }).length;
    showCluster();
    el.info.textContent = infoText();
    fillHeadColumns(); headerText();
    var sorted = columns.filter(function (c) { return c.key === state.sort.key; })[0];
    if (sorted && sorted.sel) sortBy(sorted.key, state.sort.dir);  // the order follows the new head
    drawAll();
  }
  function select(l, h) {
    var k = headOf[l + ":" + h];
    if (k === undefined) throw new Error("no head " + h + " in layer " + l);
    selectHead(k);
  }
  function selectSeries(s) {
    if (typeof s === "string") s = S.names.indexOf(s);
    if (!(s >= 0 && s < nSeries)) throw new Error("no series " + s);
    state.series = s;
    rowEls.forEach(function (r, j) { r.className = (S.skipped[j] ? "avx-skipped" : "") + (j === s ? " avx-sel" : ""); });
    drawDist(); drawPeriods();
  }

  // ------------------------------------------------------------------ events
  el.grid.addEventListener("mousemove", function (ev) {
    var hit = K.gridHit(el.grid, geom.grid, ev);
    el.grid.style.cursor = hit ? "pointer" : "default";
    if (!hit) { tip(ev, null); return; }
    var k = headOf[hit[0] + ":" + hit[1]];
    tip(ev, label(k) + " · mean " + num(stat.mean[k], 3) + " " + ci([stat.lo[k], stat.hi[k]], 3) +
        (hasNull ? " · null " + num(stat.null_mean[k], 3) + (stat.above_null[k] === true ? " · above the null" : "") : "") +
        " · median period " + num(stat.median_period[k], 1));
  });
  el.grid.addEventListener("mouseleave", function (ev) { tip(ev, null); });
  el.grid.addEventListener("click", function (ev) { var hit = K.gridHit(el.grid, geom.grid, ev); if (hit) select(hit[0], hit[1]); });
  el.sim.addEventListener("mousemove", function (ev) {
    var hit = simHit(ev);
    el.sim.style.cursor = hit ? "pointer" : "default";
    if (!hit) { tip(ev, null); state.hover = null; return; }
    var v = sim[hit[0] * nHeads + hit[1]];
    state.hover = { row: label(hit[0]), col: label(hit[1]), similarity: isNaN(v) ? null : v };
    var cl = function (k) { return clusterOf[k] < 0 ? "no cluster" : "C" + (clusterOf[k] + 1); };
    tip(ev, label(hit[0]) + " × " + label(hit[1]) + ": " + (isNaN(v) ? "undefined (a flat lag profile)" : "similarity " + v.toFixed(3)) +
        " · " + cl(hit[0]) + " | " + cl(hit[1]));
  });
  el.sim.addEventListener("mouseleave", function (ev) { tip(ev, null); state.hover = null; });
  el.sim.addEventListener("click", function (ev) { var hit = simHit(ev); if (hit) selectHead(hit[0]); });
  el.cluster.addEventListener("click", function (ev) {
    var b = ev.target.closest ? ev.target.closest("button[data-head]") : null;
    if (b) selectHead(+b.getAttribute("data-head"));
  });
  el.table.addEventListener("click", function (ev) {
    var th = ev.target.closest ? ev.target.closest("th[data-key]") : null;
    if (th) { sortBy(th.getAttribute("data-key")); return; }
    var tr = ev.target.closest ? ev.target.closest("tr[data-i]") : null;
    if (tr) selectSeries(+tr.getAttribute("data-i"));
  });
  function png() {
    var c = state.cluster ? "cluster C" + state.cluster.id + " (" + state.cluster.members.length + " heads, mean similarity " +
      num(state.cluster.meanSimilarity, 2) + ")" : "in no cluster";
    return K.composePng([el.grid, el.dist, el.periods, el.sim], root.querySelector(".avx-title").textContent,
                        [el.info.textContent, label(state.head) + ": " + c]);
  }
  el.png.addEventListener("click", function () { K.download(png(), "attnviz_scan_" + label(state.head).replace(":", "_head") + ".png"); });

  // ------------------------------------------------------------------ start
  buildTable();
  K.show(root);
  selectHead(D.selected);
  K.onResize(root, drawAll);
  K.register("attnvizScanExplorer", uid, {
    uid: uid, state: state, data: D, select: select, selectHead: selectHead, selectSeries: selectSeries,
    sortBy: sortBy, png: png, redraw: drawAll, label: label,
    headIndex: function (l, h) { var k = headOf[l + ":" + h]; return k === undefined ? null : k; },
    // client coordinates (for tests and scripting): a cell of the grid / of the similarity matrix
    gridCell: function (l, h) { return K.gridCell(el.grid, geom.grid, l, h); },
    simCell: function (row, col) {
      var g = geom.sim, b = el.sim.getBoundingClientRect();
      return { x: b.left + g.ax.x + (posOf[col] + 0.5) * g.cell, y: b.top + g.ax.y + (posOf[row] + 0.5) * g.cell };
    }
  });
})
