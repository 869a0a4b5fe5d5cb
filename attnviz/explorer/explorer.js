/* attnviz explorer: plain JavaScript on <canvas>, no library, no network.
   Called once per widget as (function (uid) {...})(uid); everything it touches lives under the
   element #attnviz-<uid>, and its API is window.attnvizExplorer[uid]. */
(function (uid) {
  "use strict";
  var K = window.attnvizKit, W0 = K && K.widget(uid);
  if (!W0) return;
  var root = W0.root, D = W0.data;
  var C = K.C, font = K.font, fmt = K.fmt, ticks = K.ticks, fmtTick = K.fmtTick, prep = K.prep, Axes = K.Axes,
      drawAxes = K.drawAxes, vline = K.vline, polyline = K.polyline, haloText = K.haloText,
      legend = K.legend, tri = K.tri, percentile = K.percentile, local = K.local, inside = K.inside;

  // ------------------------------------------------------------------ data
  var bytes = K.bytes;
  function f64(b64) { return K.typed(b64, Float64Array); }
  var cols = D.grid.cols, spc = D.grid.samples_per_col;
  var history = f64(D.history), forecast = f64(D.forecast), truth = f64(D.truth);
  // times are the series' own sample indices (history 0..L-1, forecast from L); column c covers
  // [t0 + c*spc, t0 + (c+1)*spc) with t0 the grid's sample_offset (0 for ViTime; minus the left
  // padding for a forecaster that pads the history, as VisionTS does): TokenGrid.col_start_sample
  var t0 = D.grid.sample_offset;
  function at(c) { return t0 + c * spc; }
  var boundary = at(D.grid.history_boundary);  // where the static figures draw it too
  function colOf(t) { return Math.floor((t - t0) / spc); }
  var nLayers = D.layers.length;
  var offset = [], flat = 0;
  for (var li = 0; li < nLayers; li++) { offset.push(flat); flat += D.heads[li]; }
  var qmaps = new Uint16Array(bytes(D.maps).buffer);
  var curves = new Float32Array(bytes(D.curves).buffer), curveOk = bytes(D.curve_valid);
  // per layer: null, or 1 per cell the layer never saw (VisionTS' encoder: only the context columns)
  var unseen = D.unseen.map(function (b) { return b ? bytes(b) : null; });
  var NOT_SEEN = "not seen by this layer";
  var lut = bytes(D.cmap);
  var nLag = D.lags.length;
  var rankOf = {}, best = D.ranking.length ? D.ranking[0] : null;
  D.ranking.forEach(function (r) { rankOf[r.layer + ":" + r.head] = r; });
  var lastReliable = -1;
  D.reliable.forEach(function (ok, i) { if (ok) lastReliable = i; });

  function headMap(l, h) {
    var idx = offset[l] + h, lo = D.map_lo[idx], s = (D.map_hi[idx] - lo) / 65535;
    var n = cols * cols, base = idx * n, out = new Float64Array(n), u = unseen[l];
    for (var i = 0; i < n; i++) out[i] = u && u[i] ? NaN : lo + qmaps[base + i] * s;
    return out;
  }
  function headCurve(l, h) {  // [lags, values] where the curve has a value
    var base = (offset[l] + h) * nLag, xs = [], ys = [];
    for (var i = 0; i < nLag; i++) if (curveOk[base + i]) { xs.push(D.lags[i]); ys.push(curves[base + i]); }
    return [xs, ys];
  }
  function rowUnseen(l, q) {  // the layer never saw query column q
    var u = unseen[l]; if (!u) return false;
    for (var k = 0; k < cols; k++) if (!u[q * cols + k]) return false;
    return true;
  }
  function finite(a) { return Array.prototype.filter.call(a, function (v) { return isFinite(v); }); }
  function unseenRects(ax, l) {  // the unseen cells of layer l as canvas rects on the map's axes
    var u = unseen[l], out = [];
    if (!u) return out;
    for (var q = 0; q < cols; q++) for (var k = 0; k < cols; k++) if (u[q * cols + k]) {
      var x0 = ax.sx(at(k)), y0 = ax.sy(at(q));
      out.push([x0, y0, ax.sx(at(k + 1)) - x0, ax.sy(at(q + 1)) - y0]);
    }
    return out;
  }

  // ------------------------------------------------------------------ look
  var rgb = K.lutColor(lut);
  function colsToSamples(c0, c1) { return fmt(at(c0)) + "–" + fmt(at(c1)); }

  // ------------------------------------------------------------------ elements and state
  var part = W0.part;
  var el = { layer: part("layer"), head: part("head"), scale: part("scale"), png: part("png"),
             info: part("info"), grid: part("grid"), heat: part("heatmap"), lag: part("lag"),
             series: part("series"), table: part("table"), peaks: part("peaks"), tip: part("tip") };
  var state = { layer: D.selected[0], head: D.selected[1], query: null, scale: "pct",
                heatmap: null, peakLabels: [], fundamentalLabel: null, lagProfile: null,
                seriesAttention: null, referencePeriods: D.reference_periods.slice() };
  state.query = Math.min(cols - 1, D.grid.history_cols + Math.floor(Math.max(cols - D.grid.history_cols, 1) / 2));
  var geom = {};   // where things were drawn, for hit tests (and tests)
  var cache = { key: null, map: null, image: null, vmin: 0, vmax: 1, log: false };

  function currentMap() {
    var key = state.layer + ":" + state.head + ":" + state.scale;
    if (cache.key === key) return cache;
    var m = headMap(state.layer, state.head), n = m.length, sorted = finite(m), u = unseen[state.layer];
    var log = state.scale === "log", vmin, vmax;
    if (log) {
      sorted = sorted.filter(function (v) { return v > 0; }).map(Math.log10);
      if (!sorted.length) sorted = [-12];
    }
    sorted.sort(function (a, b) { return a - b; });
    if (state.scale === "full") { vmin = sorted[0]; vmax = sorted[sorted.length - 1]; }
    else { vmin = percentile(sorted, 5); vmax = percentile(sorted, 99); }
    if (!(vmax > vmin)) { var pad = Math.max(Math.abs(vmin), 1e-12) * 1e-6; vmin -= pad; vmax += pad; }
    var off = document.createElement("canvas"); off.width = cols; off.height = cols;
    var octx = off.getContext("2d"), img = octx.createImageData(cols, cols);
    for (var i = 0; i < n; i++) {
      var v = log ? (m[i] > 0 ? Math.log10(m[i]) : vmin) : m[i];
      var t = Math.max(0, Math.min(1, (v - vmin) / (vmax - vmin))), j = Math.round(t * 255) * 3;
      var c3 = u && u[i] ? K.UNSEEN_RGB : [lut[j], lut[j + 1], lut[j + 2]];
      img.data[4 * i] = c3[0]; img.data[4 * i + 1] = c3[1]; img.data[4 * i + 2] = c3[2]; img.data[4 * i + 3] = 255;
    }
    octx.putImageData(img, 0, 0);
    cache = { key: key, map: m, image: off, vmin: vmin, vmax: vmax, log: log };
    return cache;
  }
  function layerLabel(l) { return D.layers[l] + " (layer " + l + ")"; }

  // ------------------------------------------------------------------ score grid (overview)
  function drawGrid() {
    geom.grid = K.headGrid(el.grid, {
      layers: D.layers, heads: D.heads, lut: lut, title: "periodicity score per head", key: "score",
      note: "outline: selected (blue), best (green)", selected: [state.layer, state.head],
      best: best ? [best.layer, best.head] : null,
      value: function (l, h) { var r = rankOf[l + ":" + h]; return r && r.score !== null ? r.score : null; }
    });
  }
  function gridHit(ev) { return K.gridHit(el.grid, geom.grid, ev); }

  // ------------------------------------------------------------------ time-time heatmap
  function drawHeatmap() {
    var W = el.heat.clientWidth || 420, left = 58, right = 66, topM = unseen[state.layer] ? 58 : 44, bottom = 44;
    var side = Math.max(120, Math.min(W - left - right, 440)), H = topM + side + bottom;
    var ctx = prep(el.heat, W, H), c = currentMap();
    var ax = new Axes(left, topM, side, side, [at(0), at(cols)], [at(0), at(cols)], true);
    K.title(ctx, "time-time attention: " + D.layers[state.layer] + ", head " + state.head, W);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(c.image, ax.x, ax.y, ax.w, ax.h);
    ctx.imageSmoothingEnabled = true;
    K.hatch(ctx, unseenRects(ax, state.layer), 6);
    ax.clip(ctx);
    [[boundary, true], [boundary, false]].forEach(function (b) {
      ctx.save(); ctx.strokeStyle = C.boundary; ctx.lineWidth = 1.4; ctx.setLineDash([5, 4]); ctx.beginPath();
      if (b[1]) { ctx.moveTo(ax.sx(b[0]), ax.y); ctx.lineTo(ax.sx(b[0]), ax.y + ax.h); }
      else { ctx.moveTo(ax.x, ax.sy(b[0])); ctx.lineTo(ax.x + ax.w, ax.sy(b[0])); }
      ctx.stroke(); ctx.restore();
    });
    if (state.query !== null) {  // the linked query column (a row of the map)
      var y0 = ax.sy(at(state.query)), y1 = ax.sy(at(state.query + 1));
      ctx.strokeStyle = "#fff"; ctx.lineWidth = 1.5; ctx.strokeRect(ax.x + 0.5, y0, ax.w - 1, y1 - y0);
      ctx.strokeStyle = C.red; ctx.lineWidth = 1; ctx.setLineDash([3, 2]); ctx.strokeRect(ax.x + 0.5, y0, ax.w - 1, y1 - y0); ctx.setLineDash([]);
    }
    ctx.restore();
    drawAxes(ctx, ax, { xlabel: "key time (samples)", ylabel: "query time (samples)", nx: 5, ny: 5 });
    // colour bar
    var cx = ax.x + ax.w + 10, cw = 11;
    for (var i = 0; i < side; i++) { ctx.fillStyle = rgb(1 - i / (side - 1)); ctx.fillRect(cx, ax.y + i, cw, 1.5); }
    ctx.strokeStyle = C.ink; ctx.lineWidth = 1; ctx.strokeRect(cx + 0.5, ax.y + 0.5, cw, side);
    var cb = new Axes(cx, ax.y, cw, side, [0, 1], [c.vmin, c.vmax]);
    ctx.font = font(10.5); ctx.fillStyle = C.ink; ctx.textAlign = "left"; ctx.textBaseline = "middle";
    var ct = ticks(c.vmin, c.vmax, 5);
    ct.forEach(function (v) {
      var p = Math.round(cb.sy(v)) + 0.5;
      ctx.beginPath(); ctx.moveTo(cx + cw, p); ctx.lineTo(cx + cw + 3, p); ctx.stroke();
      ctx.fillText(c.log ? fmt(Math.pow(10, v)) : fmtTick(v, ct.step), cx + cw + 5, p);
    });
    ctx.save(); ctx.translate(W - 4, ax.y + side / 2); ctx.rotate(-Math.PI / 2); ctx.textAlign = "center"; ctx.textBaseline = "bottom";
    ctx.font = font(11); ctx.fillStyle = C.soft;
    ctx.fillText("attention (" + ({ pct: "p5–p99", full: "min–max", log: "log, p5–p99" })[state.scale] + ")", 0, 0); ctx.restore();
    var items = [{ label: "history | forecast", color: C.boundary, dash: [5, 4] },
                 { label: "query column (a row)", color: C.red, dash: [3, 2], lw: 1 }];
    if (unseen[state.layer]) items.push({ label: NOT_SEEN, kind: "hatch", color: C.soft });
    legend(ctx, 4, 28, W - 8, items);
    geom.heat = ax;
    state.heatmap = { layer: state.layer, head: state.head, cols: cols, values: c.map, vmin: c.vmin, vmax: c.vmax,
                      seenCols: D.seen_cols[state.layer], unseen: unseen[state.layer] ? Array.from(unseen[state.layer]) : null };
  }

  // ------------------------------------------------------------------ lag curve
  function interp(xs, ys, x) {
    if (x <= xs[0]) return ys[0];
    for (var i = 1; i < xs.length; i++) if (x <= xs[i]) {
      var t = (x - xs[i - 1]) / (xs[i] - xs[i - 1]); return ys[i - 1] * (1 - t) + ys[i] * t;
    }
    return ys[xs.length - 1];
  }
  function drawLag() {
    var W = el.lag.clientWidth || 420, H = geom.heatH || 480;
    var ctx = prep(el.lag, W, H), per = D.periods[offset[state.layer] + state.head];
    var cv = headCurve(state.layer, state.head), xs = cv[0], ys = cv[1], i, seen = D.seen_cols[state.layer];
    var qUnseen = state.query !== null && rowUnseen(state.layer, state.query);
    // lags past the last reliable one are shaded, where the curve reaches them
    var xu = lastReliable >= 0 ? (D.lags[lastReliable] + spc / 2) : 0, shade = lastReliable < nLag - 1 && xs.length > 0 && xu < xs[xs.length - 1];
    K.title(ctx, "lag curve: mean attention at each lag", W);
    // legend first: its height sets the top of the plot
    var items = [{ label: "lag curve", color: C.blue }, { label: "detected peaks", color: C.red, kind: "tri" }];
    // the fundamental's multiples only when no reference period is drawn (their lines would interleave)
    var fMultiples = state.referencePeriods.length ? 1 : 40;
    if (per.fundamental !== null) items.push({ label: "detected fundamental " + per.fundamental_label + (fMultiples > 1 ? " (×k)" : ""), color: C.purple, dash: [6, 3] });
    state.referencePeriods.forEach(function (p) { items.push({ label: "reference period " + fmt(p) + " (×k)", color: C.green, dash: [2, 3] }); });
    items.push({ label: "query col " + state.query + (qUnseen ? " row: " + NOT_SEEN : " row (right axis)"), color: C.orange });
    if (shade) items.push({ label: "lags not used for peaks", color: "#e9ebee", kind: "box" });
    var topM = legend(ctx, 4, 26, W - 8, items) + 4;
    var left = 62, right = 56, bottom = 46;
    if (!xs.length) {  // one token column: no lag to show
      var why = seen < cols ? "this layer saw one token column" : "the grid has one token column";
      ctx.font = font(12); ctx.fillStyle = C.soft; ctx.textAlign = "center";
      ctx.fillText("no lags: " + why, W / 2, H / 2);
      state.peakLabels = []; state.fundamentalLabel = null; state.lagProfile = null; state.lagRange = null;
      el.peaks.textContent = "no lags: " + why + " of " + fmt(spc) + " samples";
      return;
    }
    var lo = Math.min.apply(null, ys), hi = Math.max.apply(null, ys), span = hi - lo || Math.abs(hi) || 1;
    var ax = new Axes(left, topM, W - left - right, H - topM - bottom,
                      [0, xs[xs.length - 1] + spc / 2], [lo - 0.06 * span, hi + 0.28 * span]);
    if (shade) {
      ctx.fillStyle = "#e9ebee"; ctx.fillRect(ax.sx(xu), ax.y, ax.x + ax.w - ax.sx(xu), ax.h);
    }
    drawAxes(ctx, ax, { xlabel: "lag (samples)", ylabel: "mean attention at lag", grid: true, ylabelGap: 56 });
    ax.clip(ctx);
    var xmax = ax.xr[1];
    state.referencePeriods.forEach(function (p) {
      ctx.fillStyle = "rgba(2,158,115,0.10)";
      for (var k = 1; k * p <= xmax && k <= 40; k++) {
        if (p >= spc)  // the +-half-column band around each multiple, where bands do not merge
          ctx.fillRect(ax.sx(k * p - spc / 2), ax.y, ax.sx(k * p + spc / 2) - ax.sx(k * p - spc / 2), ax.h);
        vline(ctx, ax, k * p, C.green, [2, 3], k === 1 ? 1.4 : 1);
      }
    });
    if (per.fundamental !== null) {
      for (var k = 1; k * per.fundamental <= xmax && k <= fMultiples; k++) {
        ctx.globalAlpha = k === 1 ? 1 : 0.45; vline(ctx, ax, k * per.fundamental, C.purple, [6, 3], 1.3); ctx.globalAlpha = 1;
      }
    }
    // the hovered query column's own row, on its own (right) axis
    var prof = null;
    if (state.query !== null && state.query > 0 && !qUnseen) {
      var m = currentMap().map, q = state.query, pl = [], pv = [];
      for (var kk = q - 1; kk >= 0; kk--) if (isFinite(m[q * cols + kk])) { pl.push((q - kk) * spc); pv.push(m[q * cols + kk]); }
    }
    if (pv && pv.length) {
      var pmax = Math.max.apply(null, pv), pmin = Math.min(0, Math.min.apply(null, pv));
      var pax = new Axes(ax.x, ax.y, ax.w, ax.h, ax.xr, [pmin, pmax > pmin ? pmin + (pmax - pmin) * 1.12 : pmin + 1]);
      polyline(ctx, pax, pl, pv, C.orange, 1.1);
      prof = { query: q, lags: pl, values: pv, axes: pax };
    }
    polyline(ctx, ax, xs, ys, C.blue, 1.6);
    ctx.fillStyle = C.blue;
    for (i = 0; i < xs.length; i++) { ctx.beginPath(); ctx.arc(ax.sx(xs[i]), ax.sy(ys[i]), 1.6, 0, 2 * Math.PI); ctx.fill(); }
    ctx.restore();
    // peaks: markers and labels (labels lifted to avoid one another)
    var placed = [], labels = [];
    ctx.font = font(10.5, "600"); ctx.textAlign = "center"; ctx.textBaseline = "bottom";
    per.peaks.forEach(function (p, j) {
      var px = ax.sx(p), py = ax.sy(interp(xs, ys, p));
      ctx.fillStyle = C.red; tri(ctx, px, py - 2, 4.5);
      var text = per.labels[j], w = ctx.measureText(text).width + 4, y = py - 11;
      for (var tries = 0; tries < 4; tries++) {
        var hit = placed.some(function (r) { return Math.abs(r.x - px) < (r.w + w) / 2 && Math.abs(r.y - y) < 12; });
        if (!hit) break; y -= 12;
      }
      y = Math.max(y, ax.y + 12);
      haloText(ctx, text, px, y, C.red);
      placed.push({ x: px, y: y, w: w }); labels.push(text);
    });
    if (per.fundamental !== null && per.fundamental <= xmax) {
      ctx.font = font(10.5); ctx.textAlign = "left"; ctx.textBaseline = "top";
      haloText(ctx, "fundamental " + per.fundamental_label, ax.sx(per.fundamental) + 3, ax.y + 3, "#8a3d80");
    }
    if (prof) {  // right axis of the profile
      ctx.save(); ctx.font = font(10.5); ctx.fillStyle = C.orange; ctx.strokeStyle = C.orange;
      ctx.textAlign = "left"; ctx.textBaseline = "middle";
      var pt = ticks(prof.axes.yr[0], prof.axes.yr[1], 4);
      pt.forEach(function (v) {
        var p = Math.round(prof.axes.sy(v)) + 0.5;
        ctx.beginPath(); ctx.moveTo(ax.x + ax.w, p); ctx.lineTo(ax.x + ax.w + 4, p); ctx.stroke();
        ctx.fillText(fmtTick(v, pt.step), ax.x + ax.w + 6, p);
      });
      ctx.restore();
      delete prof.axes;
    }
    state.peakLabels = labels;
    state.fundamentalLabel = per.fundamental_label;
    state.lagProfile = prof;
    state.lagRange = ax.xr.slice();
    geom.lag = ax;
    el.peaks.textContent = (per.peaks.length ? "peaks (samples): " + per.labels.join(", ") : "no peaks detected") +
      " · fundamental: " + (per.fundamental_label === null ? "none" : per.fundamental_label + " samples") +
      " · 1 column = " + fmt(spc) + " samples" + (seen < cols ? " · this layer saw only the first " + seen + " of " +
      cols + " columns: its lags stop at " + fmt(xs[xs.length - 1]) + " samples, the rest is " + NOT_SEEN : "");
  }

  // ------------------------------------------------------------------ series + linked attention
  function drawSeries() {
    var W = el.series.clientWidth || 800, H = 330, left = 62, right = 16;
    var ctx = prep(el.series, W, H);
    var qUnseen = rowUnseen(state.layer, state.query), some = !!unseen[state.layer];
    K.title(ctx, "series · attention of query column " + state.query + " (time " +
            colsToSamples(state.query, state.query + 1) + ") onto each key column" + (qUnseen ? ": " + NOT_SEEN : ""), W);
    var items = [{ label: "history", color: C.blue }];
    if (forecast) items.push({ label: "forecast", color: C.orange });
    if (truth) items.push({ label: "truth", color: "#555", dash: [2, 2] });
    items.push({ label: "history | forecast", color: C.boundary, dash: [5, 4] });
    items.push({ label: "query column", color: C.query, kind: "box" });
    items.push({ label: "keys after the query (faded)", color: "#bfc5cc", kind: "box" });
    if (some) items.push({ label: NOT_SEEN, kind: "hatch", color: C.soft });
    state.referencePeriods.forEach(function (p) { items.push({ label: "query − k·" + fmt(p) + " (reference)", color: C.green, dash: [2, 3] }); });
    var topM = legend(ctx, 4, 26, W - 8, items) + 4;
    var L = history.length, all = Array.prototype.slice.call(history);
    if (forecast) all = all.concat(Array.prototype.slice.call(forecast));
    if (truth) all = all.concat(Array.prototype.slice.call(truth));
    var lo = Math.min.apply(null, all), hi = Math.max.apply(null, all), pad = 0.08 * ((hi - lo) || 1);
    var xr = [Math.min(0, at(0)), Math.max(at(cols), L + (forecast ? forecast.length : 0))];
    var h1 = Math.round((H - topM - 44) * 0.56), gap = 8, h2 = H - topM - 44 - h1 - gap;
    var ax = new Axes(left, topM, W - left - right, h1, xr, [lo - pad, hi + pad]);
    var bx = new Axes(left, topM + h1 + gap, W - left - right, h2, xr, [0, 1]);
    var q = state.query, m = currentMap().map, row = [];
    for (var k = 0; k < cols; k++) row.push(m[q * cols + k]);
    var rmax = Math.max.apply(null, finite(row).concat([0]));
    bx.yr = [0, rmax > 0 ? rmax * 1.1 : 1];
    [ax, bx].forEach(function (a) {
      ctx.fillStyle = C.query; ctx.fillRect(a.sx(at(q)), a.y, a.sx(at(q + 1)) - a.sx(at(q)), a.h);
    });
    drawAxes(ctx, ax, { ylabel: "value", grid: true, xticks: false, ny: 4, ylabelGap: 54 });
    drawAxes(ctx, bx, { xlabel: "time (samples)", ylabel: "attention", grid: true, ny: 3, ylabelGap: 54 });
    ax.clip(ctx);
    var xsH = []; for (var i = 0; i < L; i++) xsH.push(i);
    if (truth) { var xt = []; for (i = 0; i < truth.length; i++) xt.push(L + i); polyline(ctx, ax, xt, truth, "#555", 1.1, [2, 2]); }
    polyline(ctx, ax, xsH, history, C.blue, 1.3);
    if (forecast) { var xf = []; for (i = 0; i < forecast.length; i++) xf.push(L + i); polyline(ctx, ax, xf, forecast, C.orange, 1.3); }
    vline(ctx, ax, boundary, C.boundary, [5, 4], 1.3);
    ctx.restore();
    bx.clip(ctx);
    var gone = [];
    for (k = 0; k < cols; k++) {
      var x0 = bx.sx(at(k)), x1 = bx.sx(at(k + 1)), y = bx.sy(row[k]);
      if (!isFinite(row[k])) { gone.push([x0, bx.y, x1 - x0, bx.h]); continue; }
      ctx.fillStyle = k > q ? "#bfc5cc" : ((k + 0.5) < D.grid.history_boundary ? C.blue : C.orange);
      ctx.globalAlpha = k > q ? 0.6 : 0.88;
      ctx.fillRect(x0 + 0.3, y, Math.max(0.5, x1 - x0 - 0.6), bx.y + bx.h - y);
    }
    ctx.globalAlpha = 1;
    K.hatch(ctx, gone, 6);
    vline(ctx, bx, boundary, C.boundary, [5, 4], 1.3);
    var centre = at(q + 0.5);
    state.referencePeriods.forEach(function (p) {
      for (var kk = 1; centre - kk * p >= bx.xr[0] && kk <= 200; kk++) vline(ctx, bx, centre - kk * p, C.green, [2, 3], 1.1);
    });
    ctx.restore();
    geom.series = ax; geom.bars = bx;
    state.seriesAttention = { query: q, values: row };
  }

  // ------------------------------------------------------------------ table, selectors, info
  function num(v, d) { return v === null || v === undefined ? "–" : v.toFixed(d); }
  function buildTable() {
    var head = "<thead><tr><th>#</th><th>layer · head</th><th title='ranking score'>score</th>" +
      "<th title='fundamental of the lag curve (samples)'>period</th><th title='agreement: correlation with the series ACF'>agr.</th>" +
      "<th title='consistency: period match with the series'>cons.</th><th title='clarity of the period estimate'>clar.</th></tr></thead>";
    var body = D.ranking.map(function (r) {
      return "<tr data-l='" + r.layer + "' data-h='" + r.head + "'><td>" + r.rank + "</td><td></td><td>" + num(r.score, 3) + "</td><td>" + num(r.period, 1) + "</td><td>" + num(r.agreement, 2) +
        "</td><td>" + num(r.consistency, 2) + "</td><td>" + num(r.clarity, 2) + "</td></tr>";
    }).join("");
    el.table.innerHTML = head + "<tbody>" + body + "</tbody>";
    var rows = el.table.querySelectorAll("tbody tr");
    for (var i = 0; i < rows.length; i++) rows[i].children[1].textContent = D.layers[+rows[i].getAttribute("data-l")] + " · " + rows[i].getAttribute("data-h");
  }
  function fillHeads() {
    var opts = "";
    for (var h = 0; h < D.heads[state.layer]; h++) opts += "<option value='" + h + "'>head " + h + "</option>";
    el.head.innerHTML = opts; el.head.value = String(state.head);
  }
  function updateInfo() {
    var r = rankOf[state.layer + ":" + state.head], per = D.periods[offset[state.layer] + state.head];
    var seen = D.seen_cols[state.layer];
    el.info.textContent = layerLabel(state.layer) + (seen < cols ? " (saw " + seen + " of " + cols + " columns)" : "") + " · head " + state.head +
      (r ? " · rank " + r.rank + "/" + D.ranking.length + " · score " + num(r.score, 3) : "") +
      " · fundamental " + (per.fundamental_label === null ? "none" : per.fundamental_label + " samples");
    var rows = el.table.querySelectorAll("tbody tr");
    for (var i = 0; i < rows.length; i++) {
      var on = +rows[i].getAttribute("data-l") === state.layer && +rows[i].getAttribute("data-h") === state.head;
      rows[i].className = on ? "avx-sel" : "";
    }
  }
  function drawAll() {
    drawGrid(); drawHeatmap();
    var stacked = el.lag.getBoundingClientRect().top > el.heat.getBoundingClientRect().top + 10;
    geom.heatH = stacked ? 360 : (el.heat.clientHeight || 510);
    drawLag(); drawSeries(); updateInfo();
  }
  function select(l, h) {
    if (l < 0 || l >= nLayers || h < 0 || h >= D.heads[l]) throw new Error("no head " + h + " in layer " + l);
    state.layer = l; state.head = h;
    el.layer.value = String(l); fillHeads();
    drawAll();
    var row = el.table.querySelector("tr.avx-sel");
    if (row && row.scrollIntoView && el.table.parentNode) {
      var wrap = el.table.parentNode, rt = row.offsetTop, top = wrap.scrollTop;
      if (rt < top + 20 || rt > top + wrap.clientHeight - 20) wrap.scrollTop = rt - wrap.clientHeight / 2;
    }
  }
  function setQuery(q) {
    q = Math.max(0, Math.min(cols - 1, q | 0));
    if (q === state.query) return;
    state.query = q; drawHeatmap(); drawLag(); drawSeries();
  }

  // ------------------------------------------------------------------ tooltips and events
  var tip = K.tipper(root, el.tip);

  el.grid.addEventListener("mousemove", function (ev) {
    var hit = gridHit(ev);
    if (!hit) { tip(ev, null); el.grid.style.cursor = "default"; return; }
    el.grid.style.cursor = "pointer";
    var r = rankOf[hit[0] + ":" + hit[1]], per = D.periods[offset[hit[0]] + hit[1]];
    tip(ev, D.layers[hit[0]] + " head " + hit[1] + (r ? " · rank " + r.rank + " · score " + num(r.score, 3) : "") +
        " · period " + (per.fundamental_label === null ? "none" : per.fundamental_label));
  });
  el.grid.addEventListener("mouseleave", function (ev) { tip(ev, null); });
  el.grid.addEventListener("click", function (ev) { var hit = gridHit(ev); if (hit) select(hit[0], hit[1]); });
  el.heat.addEventListener("mousemove", function (ev) {
    var ax = geom.heat, p = local(ev, el.heat);
    if (!ax || !inside(ax, p)) { tip(ev, null); return; }
    var q = Math.min(cols - 1, colOf(ax.iy(p[1]))), k = Math.min(cols - 1, colOf(ax.ix(p[0])));
    setQuery(q);
    var v = currentMap().map[q * cols + k];
    tip(ev, "query col " + q + " (t " + colsToSamples(q, q + 1) + (rowUnseen(state.layer, q) ? "): " + NOT_SEEN :
        ") → key col " + k + " (t " + colsToSamples(k, k + 1) + "): " + (isFinite(v) ? fmt(v) : NOT_SEEN)));
  });
  el.heat.addEventListener("mouseleave", function (ev) { tip(ev, null); });
  el.series.addEventListener("mousemove", function (ev) {
    var ax = geom.series, p = local(ev, el.series);
    if (!ax || p[0] < ax.x || p[0] > ax.x + ax.w || p[1] < ax.y || p[1] > geom.bars.y + geom.bars.h) { tip(ev, null); return; }
    var t = ax.ix(p[0]), q = colOf(t);
    if (q < 0 || q >= cols) { tip(ev, null); return; }
    setQuery(q);
    tip(ev, "t = " + Math.round(t) + " samples → query col " + q + (rowUnseen(state.layer, q) ? ": " + NOT_SEEN : ""));
  });
  el.series.addEventListener("mouseleave", function (ev) { tip(ev, null); });
  el.layer.addEventListener("change", function () { select(+el.layer.value, Math.min(state.head, D.heads[+el.layer.value] - 1)); });
  el.head.addEventListener("change", function () { select(state.layer, +el.head.value); });
  el.scale.addEventListener("change", function () { state.scale = el.scale.value; drawAll(); });
  el.table.addEventListener("click", function (ev) {
    var tr = ev.target.closest ? ev.target.closest("tr[data-l]") : null;
    if (tr) select(+tr.getAttribute("data-l"), +tr.getAttribute("data-h"));
  });

  // ------------------------------------------------------------------ PNG of the current view
  function png() {
    return K.composePng([el.grid, el.heat, el.lag, el.series], root.querySelector(".avx-title").textContent,
                        [el.info.textContent + " · " + el.peaks.textContent]);
  }
  el.png.addEventListener("click", function () {
    K.download(png(), "attnviz_" + D.layers[state.layer] + "_head" + state.head + ".png");
  });

  // ------------------------------------------------------------------ start
  var lopts = "";
  for (var l2 = 0; l2 < nLayers; l2++) lopts += "<option value='" + l2 + "'></option>";
  el.layer.innerHTML = lopts;
  for (l2 = 0; l2 < nLayers; l2++) el.layer.options[l2].textContent = l2 + " · " + D.layers[l2] + " (" + D.heads[l2] + " heads)";
  el.layer.value = String(state.layer);
  fillHeads(); buildTable();
  K.show(root);
  drawAll();
  K.onResize(root, function () { cache.key = null; drawAll(); });

  var api = {
    uid: uid, state: state, data: D, select: select, setQuery: setQuery, png: png, redraw: drawAll,
    // client coordinates (for tests and scripting): centre of a score-grid cell / of a heatmap cell
    gridCell: function (l, h) { return K.gridCell(el.grid, geom.grid, l, h); },
    heatCell: function (q, k) {
      var ax = geom.heat, b = el.heat.getBoundingClientRect();
      return { x: b.left + ax.sx(at(k + 0.5)), y: b.top + ax.sy(at(q + 0.5)) };
    },
    seriesPoint: function (t) {
      var ax = geom.series, b = el.series.getBoundingClientRect();
      return { x: b.left + ax.sx(t), y: b.top + ax.y + ax.h / 2 };
    }
  };
  K.register("attnvizExplorer", uid, api);
})
