/* The classify page: one galaxy at a time, the workflow's decision tree one question at a time, then
   the clump task (boxes in image pixels), then the next galaxy, already loaded. Submissions go through
   an outbox kept in localStorage and are retried until the server has them: no vote is lost to a
   network error or a server restart. Plain JavaScript, no dependencies. */
(function () {
  "use strict";

  var root = document.getElementById("classify");
  if (!root) return;
  var cfg = {
    project: root.dataset.project,
    nextUrl: root.dataset.nextUrl,
    submitUrl: root.dataset.submitUrl,
    workflowUrl: root.dataset.workflowUrl,
  };
  var BOX = "__boxes__";
  var PREFETCH = 3;
  var HANDLE_PX = 14;
  var $ = function (id) { return document.getElementById(id); };
  var el = {
    viewer: $("viewer"), stage: $("stage"), img: $("galaxy"), overlay: $("overlay"), message: $("viewer-message"),
    zoomIn: $("zoom-in"), zoomOut: $("zoom-out"), zoomReset: $("zoom-reset"), pan: $("pan-toggle"),
    invert: $("invert"), contrast: $("contrast"), infoToggle: $("info-toggle"), info: $("info"), infoList: $("info-list"),
    progressBar: $("progress-bar"), progressText: $("progress-text"),
    questionStep: $("question-step"), questionText: $("question-text"), answers: $("answers"),
    boxStep: $("box-step"), boxTitle: $("box-title"), boxInstruction: $("box-instruction"), boxCount: $("box-count"),
    boxAdd: $("box-add"), boxDelete: $("box-delete"), noClumps: $("no-clumps"),
    back: $("back"), done: $("done"), feedback: $("feedback"), sync: $("sync"),
  };
  var SVGNS = "http://www.w3.org/2000/svg";

  var state = {
    queue: [], fetching: null, exhausted: false,
    subject: null, tree: null, index: {}, boxTask: {}, depth: {},
    path: [], current: null, undone: null,
    boxes: [], selected: -1, noClumps: false, startedAt: null,
    view: { s: 1, tx: 0, ty: 0 }, invert: false, contrast: 100, panMode: false,
  };
  var trees = {};

  // ------------------------------------------------------------------------------------ helpers
  function cookie(name) {
    var m = document.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
    return m ? decodeURIComponent(m[1]) : "";
  }
  function uuid() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    var b = new Uint8Array(16);
    crypto.getRandomValues(b);
    b[6] = (b[6] & 15) | 64; b[8] = (b[8] & 63) | 128;
    var h = Array.prototype.map.call(b, function (x) { return (x + 256).toString(16).slice(1); }).join("");
    return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
  }
  function clamp(v, lo, hi) { return Math.max(lo, Math.min(hi, v)); }
  function message(text) { el.message.textContent = text || ""; }
  function svg(tag, attrs) {
    var n = document.createElementNS(SVGNS, tag);
    for (var k in attrs) n.setAttribute(k, attrs[k]);
    return n;
  }
  function round2(v) { return Math.round(v * 100) / 100; }

  // ------------------------------------------------------------------------------------ trees
  function loadTree(version) {
    if (!trees[version]) {
      trees[version] = fetch(cfg.workflowUrl + version + "/", { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { if (!r.ok) throw new Error("workflow " + version + ": HTTP " + r.status); return r.json(); })
        .catch(function (err) { delete trees[version]; throw err; });
    }
    return trees[version];
  }
  function indexTree(tree) {
    var index = {}, depth = {};
    tree.questions.forEach(function (q) { index[q.name] = q; });
    function longest(name) {  // questions still to answer from `name`, itself included
      if (depth[name] !== undefined) return depth[name];
      var best = 0;
      index[name].answers.forEach(function (a) { if (a.next) best = Math.max(best, longest(a.next)); });
      return (depth[name] = best + 1);
    }
    tree.questions.forEach(function (q) { longest(q.name); });
    return { index: index, depth: depth };
  }

  // ------------------------------------------------------------------------------------ prefetch
  function preload(subject) {
    var img = new Image();
    img.decoding = "async";
    img.src = subject.image_url;
    subject._img = img;  // keep a reference so the browser keeps the decoded image
    subject._ready = (img.decode ? img.decode() : Promise.resolve()).catch(function () {});
  }
  function refill() {
    if (state.fetching) return state.fetching;
    var want = PREFETCH - state.queue.length;
    if (want <= 0 || state.exhausted) return Promise.resolve(0);
    var url = cfg.nextUrl + "?n=" + want + "&project=" + encodeURIComponent(cfg.project);
    state.fetching = fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(function (list) {
        var known = {};
        state.queue.forEach(function (s) { known[s.id] = true; });
        if (state.subject) known[state.subject.id] = true;
        list.forEach(function (s) {
          if (known[s.id]) return;
          preload(s);
          loadTree(s.workflow_version).catch(function () {});
          state.queue.push(s);
        });
        if (list.length < want) state.exhausted = true;
        return list.length;
      })
      .finally(function () { state.fetching = null; });
    return state.fetching;
  }
  // The last galaxies of a project: look again now and then in case new ones arrived.
  setInterval(function () { if (state.exhausted) { state.exhausted = false; if (!state.subject) showNext(); else refill().catch(function () {}); } }, 60000);

  // ------------------------------------------------------------------------------------ showing a subject
  function showNext() {
    var next = state.queue.shift();
    if (!next) {
      message("Loading galaxies…");
      setBusy(true);
      return refill().then(function (n) {
        if (state.queue.length) return showNext();
        state.subject = null;
        message(n === 0 ? "You have seen every galaxy that needs you right now. Thank you! New ones arrive often: this page checks again every minute." : "Loading galaxies…");
      }).catch(function () {
        message("Could not reach the server; trying again in a few seconds…");
        setTimeout(showNext, 4000);
      });
    }
    return loadTree(next.workflow_version).then(function (tree) {
      return next._ready.then(function () { present(next, tree); });
    }).catch(function () {
      state.queue.unshift(next);
      message("Could not load the questions; trying again in a few seconds…");
      setTimeout(showNext, 4000);
    });
  }

  function present(subject, tree) {
    var ix = indexTree(tree);
    state.subject = subject;
    state.tree = tree; state.index = ix.index; state.depth = ix.depth;
    state.boxTask = tree.box_task || { enabled: false };
    state.path = []; state.undone = null; state.boxes = []; state.selected = -1; state.noClumps = false;
    state.startedAt = new Date().toISOString();
    el.img.src = subject.image_url;
    el.img.alt = "Galaxy " + subject.external_id + (subject.survey ? " from " + subject.survey : "");
    el.overlay.setAttribute("viewBox", "0 0 " + subject.width + " " + subject.height);
    el.viewer.dataset.subjectId = subject.id;
    el.viewer.dataset.imageWidth = subject.width;
    el.viewer.dataset.imageHeight = subject.height;
    resetView();
    renderInfo();
    message("");
    setBusy(false);
    goTo(tree.first);
    refill().catch(function () {});
  }

  function setBusy(busy) {
    el.answers.querySelectorAll("button").forEach(function (b) { b.disabled = busy; });
    el.done.disabled = busy || !doneAllowed();
  }

  function renderInfo() {
    var s = state.subject, rows = [["Galaxy", s.external_id], ["Survey", s.survey || "–"]];
    if (s.ra !== null && s.ra !== undefined) rows.push(["RA, Dec (°)", s.ra.toFixed(5) + ", " + s.dec.toFixed(5)]);
    rows.push(["Image", s.width + " × " + s.height + " px"]);
    Object.keys(s.metadata || {}).forEach(function (k) {
      var v = s.metadata[k];
      rows.push([k, typeof v === "number" && !Number.isInteger(v) ? v.toPrecision(4) : String(v)]);
    });
    el.infoList.textContent = "";
    rows.forEach(function (r) {
      var dt = document.createElement("dt"), dd = document.createElement("dd");
      dt.textContent = r[0]; dd.textContent = r[1];
      el.infoList.appendChild(dt); el.infoList.appendChild(dd);
    });
  }

  // ------------------------------------------------------------------------------------ the tree
  function boxTaskApplies() {
    // The clump task follows the questions, except when the very first answer ended the tree (a star
    // or an artifact, not a galaxy: there is nothing to mark).
    return !!state.boxTask.enabled && state.path.length > 1;
  }

  function goTo(name) {
    state.current = name;
    var boxes = name === BOX;
    el.questionStep.hidden = boxes;
    el.boxStep.hidden = !boxes;
    el.done.hidden = !boxes;
    el.pan.hidden = !boxes;
    el.viewer.dataset.mode = boxes && !state.panMode ? "draw" : "pan";
    el.overlay.style.pointerEvents = boxes ? "auto" : "none";
    el.back.disabled = state.path.length === 0;
    if (boxes) renderBoxStep(); else renderQuestion(state.index[name]);
    renderBoxes();
    renderProgress();
  }

  function renderQuestion(q) {
    el.questionText.textContent = q.text || q.name;
    el.answers.textContent = "";
    q.answers.forEach(function (a, i) {
      var b = document.createElement("button");
      b.type = "button";
      b.className = "answer";
      b.dataset.answer = a.name;
      if (state.undone && state.undone.question === q.name && state.undone.answer === a.name) b.classList.add("chosen");
      var icon = window.ZooIcons && window.ZooIcons.get(q.name, a.name);
      if (icon) b.insertAdjacentHTML("beforeend", icon);
      var label = document.createElement("span");
      label.textContent = a.text || a.name;
      b.appendChild(label);
      if (i < 9) {
        var key = document.createElement("span");
        key.className = "key"; key.textContent = String(i + 1); key.setAttribute("aria-hidden", "true");
        b.appendChild(key);
        b.setAttribute("aria-keyshortcuts", String(i + 1));
      }
      b.addEventListener("click", function () { choose(i); });
      el.answers.appendChild(b);
    });
  }

  function choose(i) {
    if (!state.subject || state.current === BOX) return;
    var q = state.index[state.current], a = q && q.answers[i];
    if (!a) return;
    state.path.push({ question: q.name, answer: a.name });
    state.undone = null;
    if (a.next) goTo(a.next);
    else if (boxTaskApplies()) goTo(BOX);
    else submit();
    focusStep();
  }

  function back() {
    if (!state.path.length) return;
    var last = state.path.pop();
    state.undone = last;
    state.selected = -1;
    goTo(last.question);
    focusStep();
  }

  function focusStep() {
    // Keep keyboard users on the step; on touch screens do not scroll the image away.
    var target = state.current === BOX ? el.boxTitle : el.questionText;
    try { target.focus({ preventScroll: true }); } catch (e) { target.focus(); }
  }

  function renderProgress() {
    var answered = state.path.length, extra = state.boxTask.enabled ? 1 : 0;
    var remaining = state.current === BOX ? 1 : state.depth[state.current] + extra;
    var total = answered + remaining;
    el.progressBar.style.width = Math.round(100 * answered / Math.max(total, 1)) + "%";
    if (state.current === BOX) el.progressText.textContent = "Last step: clumps";
    else {
      var most = state.depth[state.current] - 1;
      el.progressText.textContent = "Question " + (answered + 1) +
        (most > 0 ? " · at most " + most + " more" : " · last question") + (extra ? ", then clumps" : "");
    }
  }

  // ------------------------------------------------------------------------------------ clump task
  function renderBoxStep() {
    el.boxInstruction.textContent = state.boxTask.instruction || "Draw a box around each clump.";
    updateBoxControls();
  }
  function maxBoxes() { return state.boxTask.max_boxes || 30; }
  function minSize() { return Math.max(state.boxTask.min_size || 1, 1); }
  function doneAllowed() { return state.current === BOX && (state.boxes.length > 0 || state.noClumps); }
  function updateBoxControls() {
    var n = state.boxes.length;
    el.boxCount.textContent = state.noClumps ? "No clumps" : n === 0 ? "No boxes yet" : n + (n === 1 ? " clump marked" : " clumps marked");
    el.noClumps.setAttribute("aria-pressed", String(state.noClumps));
    el.boxDelete.disabled = state.selected < 0;
    el.boxAdd.disabled = n >= maxBoxes();
    el.done.disabled = !doneAllowed();
    el.done.textContent = n === 0 && state.noClumps ? "Done: no clumps" : "Done";
  }
  function setNoClumps(on) {
    state.noClumps = on;
    if (on) { state.boxes = []; state.selected = -1; renderBoxes(); }
    updateBoxControls();
  }
  function addBox(b) {
    if (state.boxes.length >= maxBoxes()) { el.boxCount.textContent = "At most " + maxBoxes() + " boxes"; return; }
    state.boxes.push(b);
    state.noClumps = false;
    state.selected = state.boxes.length - 1;
    renderBoxes(); updateBoxControls();
  }
  function deleteBox(i) {
    if (i < 0 || i >= state.boxes.length) return;
    state.boxes.splice(i, 1);
    state.selected = -1;
    renderBoxes(); updateBoxControls();
  }
  function select(i) { state.selected = i; renderBoxes(); updateBoxControls(); }
  function fitBox(b) {
    var W = state.subject.width, H = state.subject.height, m = minSize();
    b.width = clamp(b.width, m, W); b.height = clamp(b.height, m, H);
    b.x = clamp(b.x, 0, W - b.width); b.y = clamp(b.y, 0, H - b.height);
    return b;
  }

  function displayScale() {  // CSS pixels per image pixel, zoom included
    var r = el.stage.getBoundingClientRect();
    return Math.min(r.width / state.subject.width, r.height / state.subject.height);
  }
  function toImage(clientX, clientY) {
    var r = el.stage.getBoundingClientRect(), W = state.subject.width, H = state.subject.height;
    var k = Math.min(r.width / W, r.height / H);
    return { x: (clientX - (r.left + (r.width - W * k) / 2)) / k, y: (clientY - (r.top + (r.height - H * k) / 2)) / k };
  }

  function renderBoxes(drawing) {
    var o = el.overlay;
    while (o.firstChild) o.removeChild(o.firstChild);
    if (!state.subject || state.current !== BOX) return;
    var k = displayScale(), hs = HANDLE_PX / k, coarse = window.matchMedia("(pointer: coarse)").matches;
    if (coarse) hs *= 1.6;
    state.boxes.forEach(function (b, i) {
      var g = svg("g", { "class": "box-g" + (i === state.selected ? " selected" : ""), "data-i": i });
      var r = svg("rect", { "class": "box", x: b.x, y: b.y, width: b.width, height: b.height, tabindex: 0, role: "button",
        "data-i": i, "aria-label": "Clump box " + (i + 1) + ": arrows move it, Shift+arrows resize it, Delete removes it" });
      r.addEventListener("focus", function () { if (state.selected !== i) { state.selected = i; updateBoxControls(); refreshSelection(); } });
      g.appendChild(r);
      // The box's number sits inside its top-left corner, so it is never cut off at the image edge.
      var tw = Math.min(18 / k, b.width), th = Math.min(16 / k, b.height), inset = i === state.selected ? hs / 2 : 0;
      g.appendChild(svg("rect", { "class": "box-tag", x: b.x + inset, y: b.y + inset, width: tw, height: th }));
      var t = svg("text", { "class": "box-label", x: b.x + inset + tw / 2, y: b.y + inset + th * 0.78, "text-anchor": "middle",
        "font-size": Math.min(12 / k, th * 0.9) });
      t.textContent = String(i + 1);
      g.appendChild(t);
      if (i === state.selected) {
        [["nw", b.x, b.y], ["ne", b.x + b.width, b.y], ["sw", b.x, b.y + b.height], ["se", b.x + b.width, b.y + b.height]]
          .forEach(function (h) {
            g.appendChild(svg("rect", { "class": "handle handle-" + h[0], "data-h": h[0], "data-i": i,
              x: h[1] - hs / 2, y: h[2] - hs / 2, width: hs, height: hs }));
          });
        var d = svg("g", { "class": "delete-btn", "data-i": i, role: "button", "aria-label": "Delete box " + (i + 1) });
        var cx = b.x + b.width + hs * 0.9, cy = b.y - hs * 0.9, rr = hs * 0.75;
        cx = Math.min(cx, state.subject.width + hs); cy = Math.max(cy, -hs);
        d.appendChild(svg("circle", { cx: cx, cy: cy, r: rr }));
        d.appendChild(svg("path", { d: "M" + (cx - rr / 2.5) + " " + (cy - rr / 2.5) + "L" + (cx + rr / 2.5) + " " + (cy + rr / 2.5) +
          "M" + (cx + rr / 2.5) + " " + (cy - rr / 2.5) + "L" + (cx - rr / 2.5) + " " + (cy + rr / 2.5) }));
        g.appendChild(d);
      }
      o.appendChild(g);
    });
    if (drawing) o.appendChild(svg("rect", { "class": "drawing", x: drawing.x, y: drawing.y, width: drawing.width, height: drawing.height }));
  }
  function refreshSelection() {
    var focused = document.activeElement && document.activeElement.getAttribute && document.activeElement.getAttribute("data-i");
    renderBoxes();
    if (focused !== null && focused !== undefined) {
      var again = el.overlay.querySelector('rect.box[data-i="' + focused + '"]');
      if (again) again.focus({ preventScroll: true });
    }
  }

  // ------------------------------------------------------------------------------------ zoom and pan
  function applyView() {
    var v = state.view;
    el.stage.style.transform = "translate(" + v.tx + "px," + v.ty + "px) scale(" + v.s + ")";
    if (state.current === BOX) renderBoxes(gesture && gesture.type === "draw" ? gesture.rect : null);
  }
  function clampView() {
    var v = state.view, w = el.viewer.clientWidth, h = el.viewer.clientHeight;
    v.s = clamp(v.s, 1, 10);
    v.tx = clamp(v.tx, w - w * v.s, 0); v.ty = clamp(v.ty, h - h * v.s, 0);
  }
  function zoomAt(factor, cx, cy) {
    var v = state.view, s2 = clamp(v.s * factor, 1, 10);
    if (cx === undefined) { cx = el.viewer.clientWidth / 2; cy = el.viewer.clientHeight / 2; }
    v.tx = cx - (cx - v.tx) * (s2 / v.s); v.ty = cy - (cy - v.ty) * (s2 / v.s); v.s = s2;
    clampView(); applyView();
  }
  function resetView() { state.view = { s: 1, tx: 0, ty: 0 }; applyView(); }
  function applyFilters() {
    el.img.style.filter = (state.invert ? "invert(1) " : "") + "contrast(" + state.contrast + "%)";
  }

  // ------------------------------------------------------------------------------------ pointer input
  var pointers = {}, gesture = null;
  function pointerCount() { return Object.keys(pointers).length; }
  function viewerPoint(e) { var r = el.viewer.getBoundingClientRect(); return { x: e.clientX - r.left, y: e.clientY - r.top }; }

  el.viewer.addEventListener("pointerdown", function (e) {
    if (!state.subject || (e.pointerType === "mouse" && e.button !== 0)) return;
    pointers[e.pointerId] = { x: e.clientX, y: e.clientY };
    try { el.viewer.setPointerCapture(e.pointerId); } catch (err) { /* synthetic events */ }
    e.preventDefault();
    if (pointerCount() === 2) {  // pinch: zoom and pan with two fingers, whatever the step
      var ids = Object.keys(pointers), a = pointers[ids[0]], b = pointers[ids[1]];
      gesture = { type: "pinch", dist: Math.hypot(a.x - b.x, a.y - b.y), mid: { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 } };
      renderBoxes();
      return;
    }
    if (pointerCount() > 2) return;
    var drawing = state.current === BOX && !state.panMode;
    var t = e.target;
    if (drawing) {
      var del = t.closest && t.closest(".delete-btn");
      if (del) { deleteBox(+del.getAttribute("data-i")); gesture = null; return; }
      var h = t.closest && t.closest(".handle");
      if (h) {
        var hi = +h.getAttribute("data-i");
        gesture = { type: "resize", i: hi, corner: h.getAttribute("data-h"), orig: Object.assign({}, state.boxes[hi]) };
        return;
      }
      var g = t.closest && t.closest("g.box-g");
      if (g) {
        var gi = +g.getAttribute("data-i");
        if (state.selected !== gi) select(gi);
        gesture = { type: "move", i: gi, start: toImage(e.clientX, e.clientY), orig: Object.assign({}, state.boxes[gi]), moved: false };
        return;
      }
      var p = toImage(e.clientX, e.clientY);
      if (p.x >= 0 && p.y >= 0 && p.x <= state.subject.width && p.y <= state.subject.height) {
        if (state.selected >= 0) select(-1);
        gesture = { type: "draw", x0: p.x, y0: p.y, rect: null };
        return;
      }
    }
    var vp = viewerPoint(e);
    gesture = { type: "pan", x: vp.x, y: vp.y, tx: state.view.tx, ty: state.view.ty };
    el.viewer.classList.add("is-panning");
  });

  el.viewer.addEventListener("pointermove", function (e) {
    if (!pointers[e.pointerId]) return;
    pointers[e.pointerId] = { x: e.clientX, y: e.clientY };
    if (!gesture) return;
    e.preventDefault();
    var W = state.subject.width, H = state.subject.height;
    if (gesture.type === "pinch") {
      var ids = Object.keys(pointers);
      if (ids.length < 2) return;
      var a = pointers[ids[0]], b = pointers[ids[1]];
      var dist = Math.hypot(a.x - b.x, a.y - b.y), mid = { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 };
      var r = el.viewer.getBoundingClientRect();
      state.view.tx += mid.x - gesture.mid.x; state.view.ty += mid.y - gesture.mid.y;
      if (gesture.dist > 0) zoomAt(dist / gesture.dist, mid.x - r.left, mid.y - r.top); else { clampView(); applyView(); }
      gesture.dist = dist; gesture.mid = mid;
    } else if (gesture.type === "pan") {
      var vp = viewerPoint(e);
      state.view.tx = gesture.tx + vp.x - gesture.x; state.view.ty = gesture.ty + vp.y - gesture.y;
      clampView(); applyView();
    } else if (gesture.type === "draw") {
      var p = toImage(e.clientX, e.clientY), x1 = clamp(p.x, 0, W), y1 = clamp(p.y, 0, H);
      gesture.rect = { x: Math.min(gesture.x0, x1), y: Math.min(gesture.y0, y1),
        width: Math.abs(x1 - gesture.x0), height: Math.abs(y1 - gesture.y0) };
      renderBoxes(gesture.rect);
    } else if (gesture.type === "move") {
      var q = toImage(e.clientX, e.clientY), o = gesture.orig, bm = state.boxes[gesture.i];
      bm.x = clamp(o.x + q.x - gesture.start.x, 0, W - o.width);
      bm.y = clamp(o.y + q.y - gesture.start.y, 0, H - o.height);
      gesture.moved = true;
      renderBoxes();
    } else if (gesture.type === "resize") {
      var s = toImage(e.clientX, e.clientY), or = gesture.orig, c = gesture.corner, m = minSize();
      var left = or.x, top = or.y, right = or.x + or.width, bottom = or.y + or.height;
      var px = clamp(s.x, 0, W), py = clamp(s.y, 0, H);
      if (c.indexOf("w") >= 0) left = Math.min(px, right - m); else right = Math.max(px, left + m);
      if (c.indexOf("n") >= 0) top = Math.min(py, bottom - m); else bottom = Math.max(py, top + m);
      state.boxes[gesture.i] = fitBox({ x: left, y: top, width: right - left, height: bottom - top });
      renderBoxes();
    }
  });

  function endPointer(e) {
    if (!pointers[e.pointerId]) return;
    delete pointers[e.pointerId];
    el.viewer.classList.remove("is-panning");
    if (!gesture) return;
    if (gesture.type === "pinch") { if (pointerCount() === 0) gesture = null; else gesture = null; return; }
    if (gesture.type === "draw") {
      var r = gesture.rect, m = minSize();
      // A tap is not a box: it needs the task's minimum size and a few screen pixels each way.
      if (r && r.width >= m && r.height >= m && r.width * displayScale() >= 4 && r.height * displayScale() >= 4) addBox(fitBox(r));
      else renderBoxes();
    }
    gesture = null;
  }
  el.viewer.addEventListener("pointerup", endPointer);
  el.viewer.addEventListener("pointercancel", endPointer);
  el.viewer.addEventListener("wheel", function (e) {
    if (!state.subject) return;
    e.preventDefault();
    var vp = viewerPoint(e);
    zoomAt(e.deltaY < 0 ? 1.2 : 1 / 1.2, vp.x, vp.y);
  }, { passive: false });
  window.addEventListener("resize", function () { clampView(); applyView(); });

  // ------------------------------------------------------------------------------------ buttons and keys
  el.zoomIn.addEventListener("click", function () { zoomAt(1.4); });
  el.zoomOut.addEventListener("click", function () { zoomAt(1 / 1.4); });
  el.zoomReset.addEventListener("click", resetView);
  el.invert.addEventListener("click", function () {
    state.invert = !state.invert; el.invert.setAttribute("aria-pressed", String(state.invert)); applyFilters();
  });
  el.contrast.addEventListener("input", function () {
    state.contrast = +el.contrast.value; el.contrast.setAttribute("aria-valuetext", state.contrast + "%"); applyFilters();
  });
  el.infoToggle.addEventListener("click", function () {
    var open = el.info.hidden; el.info.hidden = !open; el.infoToggle.setAttribute("aria-expanded", String(open));
  });
  el.pan.addEventListener("click", function () {
    state.panMode = !state.panMode; el.pan.setAttribute("aria-pressed", String(state.panMode));
    el.viewer.dataset.mode = state.current === BOX && !state.panMode ? "draw" : "pan";
  });
  el.back.addEventListener("click", back);
  el.done.addEventListener("click", function () { if (doneAllowed()) submit(); });
  el.boxAdd.addEventListener("click", function () { addCentredBox(); });
  el.boxDelete.addEventListener("click", function () { deleteBox(state.selected); });
  el.noClumps.addEventListener("click", function () { setNoClumps(!state.noClumps); });

  function addCentredBox() {
    var W = state.subject.width, H = state.subject.height, size = Math.max(minSize(), Math.round(Math.min(W, H) / 10));
    addBox(fitBox({ x: (W - size) / 2, y: (H - size) / 2, width: size, height: size }));
    var r = el.overlay.querySelector('rect.box[data-i="' + state.selected + '"]');
    if (r) r.focus({ preventScroll: true });
  }

  document.addEventListener("keydown", function (e) {
    if (!state.subject || e.ctrlKey || e.metaKey || e.altKey) return;
    var t = e.target, tag = t && t.tagName;
    if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT") return;
    var key = e.key, onBoxes = state.current === BOX;
    if (/^[1-9]$/.test(key) && !onBoxes) { e.preventDefault(); choose(+key - 1); return; }
    if (key === "Backspace" || key === "Delete") {
      e.preventDefault();
      if (onBoxes && state.selected >= 0) deleteBox(state.selected);
      else if (key === "Backspace") back();
      return;
    }
    if (key === "Enter") {
      if (tag === "BUTTON" || tag === "A") return;  // the focused control handles its own Enter
      if (onBoxes && doneAllowed()) { e.preventDefault(); submit(); }
      return;
    }
    if (key === "Escape" && onBoxes) { select(-1); return; }
    if (onBoxes && (key === "a" || key === "A")) { e.preventDefault(); addCentredBox(); return; }
    if (onBoxes && (key === "n" || key === "N")) { e.preventDefault(); setNoClumps(!state.noClumps); return; }
    if (onBoxes && state.selected >= 0 && key.indexOf("Arrow") === 0) {
      e.preventDefault();
      var b = state.boxes[state.selected], step = Math.max(1, Math.round(state.subject.width / 100)) * (e.shiftKey ? 1 : 1);
      var dx = key === "ArrowLeft" ? -step : key === "ArrowRight" ? step : 0, dy = key === "ArrowUp" ? -step : key === "ArrowDown" ? step : 0;
      if (e.shiftKey) { b.width += dx; b.height += dy; } else { b.x += dx; b.y += dy; }
      fitBox(b); refreshSelection(); return;
    }
    if (key === "+" || key === "=") { zoomAt(1.4); return; }
    if (key === "-" || key === "_") { zoomAt(1 / 1.4); return; }
    if (key === "0") { resetView(); return; }
    if (key === "i" || key === "I") { el.invert.click(); return; }
    if (key === "m" || key === "M") { el.infoToggle.click(); return; }
    if ((key === "p" || key === "P") && onBoxes) { el.pan.click(); return; }
  });

  // ------------------------------------------------------------------------------------ submitting
  function submit() {
    var s = state.subject;
    if (!s) return;
    var payload = {
      subject: s.id, workflow_version: s.workflow_version, key: uuid(), answers: state.path.slice(),
      boxes: state.current === BOX ? state.boxes.map(function (b) {
        return { x: round2(b.x), y: round2(b.y), width: round2(b.width), height: round2(b.height) };
      }).map(fitBox) : [],
      no_clumps: state.current === BOX && state.noClumps && state.boxes.length === 0,
      started_at: state.startedAt, finished_at: new Date().toISOString(),
      client: { screen: screen.width + "x" + screen.height, viewer: el.viewer.clientWidth + "px",
        pointer: window.matchMedia("(pointer: coarse)").matches ? "touch" : "mouse" },
    };
    outbox.add({ payload: payload, label: s.external_id });
    state.subject = null;
    setBusy(true);
    showNext();
    outbox.flush();
  }

  var OUTBOX_KEY = "zoo.outbox.v1";
  var outbox = {
    items: [], busy: false, timer: null, attempt: 0, retryAt: 0, lastProblem: "", rejected: null,
    load: function () {
      try { this.items = JSON.parse(localStorage.getItem(OUTBOX_KEY) || "[]"); } catch (e) { this.items = []; }
    },
    save: function () {
      try { localStorage.setItem(OUTBOX_KEY, JSON.stringify(this.items)); } catch (e) { /* private mode: memory only */ }
    },
    add: function (item) { this.items.push(item); this.save(); this.render(); },
    flush: function () {
      var self = this;
      if (self.busy || !self.items.length) return;
      self.busy = true;
      clearTimeout(self.timer);
      var item = self.items[0];
      fetch(cfg.submitUrl, {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": cookie("csrftoken") },
        body: JSON.stringify(item.payload),
      }).then(function (res) {
        return res.json().catch(function () { return {}; }).then(function (body) { return { status: res.status, body: body }; });
      }).then(function (r) {
        self.busy = false;
        if (r.status === 201 || r.status === 200) {
          self.drop(item); self.attempt = 0; self.lastProblem = "";
          if (r.body && r.body.feedback) showFeedback(item, r.body.feedback);
          self.flush();
        } else if (r.status === 400) {
          // Invalid for good (retrying cannot help): drop it and say why.
          self.drop(item); self.rejected = { label: item.label, reason: describe(r.body) };
          self.flush();
        } else {
          self.retry(r.status === 429 ? "the server asked us to slow down" : r.status === 403 ? "your session changed" : "the server had a problem (" + r.status + ")");
        }
        self.render();
      }).catch(function () {
        self.busy = false;
        self.retry("no connection");
        self.render();
      });
    },
    drop: function (item) {
      var i = this.items.indexOf(item);
      if (i >= 0) this.items.splice(i, 1);
      this.save();
    },
    retry: function (problem) {
      var self = this;
      self.attempt += 1;
      self.lastProblem = problem;
      var delay = Math.min(60, Math.pow(2, Math.min(self.attempt, 6))) * 1000 * (0.8 + 0.4 * Math.random());
      self.retryAt = Date.now() + delay;
      clearTimeout(self.timer);
      self.timer = setTimeout(function () { self.flush(); }, delay);
    },
    render: function () {
      var n = this.items.length, box = el.sync;
      box.classList.remove("error", "ok");
      if (this.rejected) {
        box.hidden = false; box.classList.add("error");
        box.textContent = "The classification of " + this.rejected.label + " was not accepted: " + this.rejected.reason;
        var self = this;
        setTimeout(function () { self.rejected = null; self.render(); }, 12000);
        return;
      }
      if (!n) { box.hidden = true; box.textContent = ""; return; }
      box.hidden = false;
      if (!this.lastProblem) { box.textContent = "Sending " + n + " classification" + (n > 1 ? "s" : "") + "…"; return; }
      var secs = Math.max(0, Math.round((this.retryAt - Date.now()) / 1000));
      box.textContent = n + " classification" + (n > 1 ? "s are" : " is") + " saved in this browser and not sent yet (" +
        this.lastProblem + "). Retrying in " + secs + " s; keep classifying, nothing is lost. ";
      var btn = document.createElement("button");
      btn.type = "button"; btn.className = "link-button"; btn.textContent = "Retry now";
      var me = this;
      btn.addEventListener("click", function () { me.attempt = 0; me.flush(); });
      box.appendChild(btn);
    },
  };
  function describe(body) {
    if (!body || typeof body !== "object") return "the server refused it";
    return Object.keys(body).map(function (k) { return k + ": " + [].concat(body[k]).join(" "); }).join("; ");
  }
  setInterval(function () { if (outbox.items.length && outbox.lastProblem) outbox.render(); }, 1000);
  window.addEventListener("online", function () { outbox.attempt = 0; outbox.flush(); });

  function showFeedback(item, fb) {
    var f = el.feedback, agreed = fb.questions_agreed, compared = fb.questions_compared;
    f.hidden = false;
    f.classList.toggle("mismatch", compared > 0 && agreed < compared);
    f.textContent = "";
    var strong = document.createElement("strong");
    strong.textContent = "Experts said: " + (fb.text || "see their answers") + ". ";
    f.appendChild(strong);
    f.appendChild(document.createTextNode(
      "That was " + item.label + (compared ? "; you matched them on " + agreed + " of " + compared + " question" + (compared > 1 ? "s" : "") + "." : ".")));
    clearTimeout(showFeedback.timer);
    showFeedback.timer = setTimeout(function () { f.hidden = true; }, 15000);
  }

  // ------------------------------------------------------------------------------------ start
  outbox.load();
  outbox.render();
  outbox.flush();
  applyFilters();
  showNext();
})();
