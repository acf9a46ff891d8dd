// The console without a build step: live previews while composing, moving progress bars.
"use strict";

function debounce(fn, ms) {
  let timer = null;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
}

function livePreviews(form) {
  const target = document.getElementById("previews");
  const refresh = async () => {
    const response = await fetch(form.dataset.preview, {
      method: "POST", body: new FormData(form), credentials: "same-origin",
    });
    if (!response.ok) return;
    const answer = await response.json();
    for (const slot of form.querySelectorAll("[data-error-for]")) {
      slot.textContent = answer.errors[slot.dataset.errorFor] || "";
    }
    target.innerHTML = answer.html;  // rendered and escaped by the server's templates
  };
  const later = debounce(refresh, 300);
  form.addEventListener("input", later);
  form.addEventListener("change", later);
  if (form.querySelector("#title").value) refresh();
}

function liveProgress(table) {
  const names = {
    queued: "受付", scheduled: "予約", dispatching: "配信中",
    done: "完了", failed: "失敗", cancelled: "取消", pending_approval: "承認待ち",
  };
  const tick = async () => {
    const response = await fetch(table.dataset.progress, { credentials: "same-origin" });
    if (!response.ok) return;
    const { notices } = await response.json();
    let moving = false;
    for (const notice of notices) {
      const row = document.getElementById("notice-" + notice.id);
      if (!row) continue;
      const status = row.querySelector(".status");
      status.dataset.status = notice.status;
      status.textContent = names[notice.status] || notice.status;
      const over = ["done", "failed", "cancelled"].includes(notice.status);
      for (const [channel, p] of Object.entries(notice.progress)) {
        const bar = row.querySelector(`progress[data-channel="${channel}"]`);
        const count = row.querySelector(`.count[data-channel="${channel}"]`);
        const nobody = over && !p.recipients;  // no one on this channel chose these areas/topics
        if (bar) { bar.max = p.recipients || 1; bar.value = p.sent + p.failed; bar.hidden = nobody; }
        const waits = row.querySelector(`.waits[data-channel="${channel}"]`);
        if (waits) waits.textContent = p.waits || "";
        if (count) {
          count.textContent = nobody ? "対象なし"
            : `${p.sent}/${p.recipients}` + (p.failed ? `（失敗 ${p.failed}）` : "");
        }
      }
      if (!over) moving = true;
    }
    setTimeout(tick, moving ? 1000 : 5000);
  };
  tick();
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("compose");
  if (form) livePreviews(form);
  const table = document.querySelector("table[data-progress]");
  if (table) liveProgress(table);
});
