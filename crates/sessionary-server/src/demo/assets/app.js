// Sessionary demo shop: live preferences, expiry warning, session events.
// Plain JavaScript, no build step. Loaded with `defer`, so the DOM is ready.
"use strict";
(() => {
  const root = document.documentElement;
  // Tests tell a reload from a live update by this value.
  window.sessionaryPageId = Math.random().toString(36).slice(2);
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content;
  // Both languages' texts, fetched the first time the language or a warning
  // needs them (the page itself comes rendered in the right language).
  let dictionary;
  const loadDictionary = () => (dictionary ??= fetch("/assets/i18n.json").then((r) => r.json()));
  const text = async (key) => {
    const dict = await loadDictionary();
    return (dict[root.lang] || dict.en)[key] ?? key;
  };

  async function applyPrefs(p) {
    if (p.theme === "light" || p.theme === "dark") root.dataset.theme = p.theme;
    if ((p.lang === "en" || p.lang === "fr") && p.lang !== root.lang) {
      root.lang = p.lang;
      for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = await text(el.dataset.i18n);
    }
    document.getElementById("theme").value = root.dataset.theme;
    document.getElementById("lang").value = root.lang;
    if (lastWarning) showWarning(lastWarning);
  }

  async function savePrefs(change) {
    await applyPrefs(change);
    const res = await fetch("/preferences", {
      method: "POST",
      headers: { "content-type": "application/json", "x-csrf-token": csrf || "" },
      body: JSON.stringify(change),
    });
    if (!res.ok) console.warn("preferences not saved", res.status);
  }
  // Activity: say when this page is left, so the time on it is known (the
  // server times it; a beacon survives the navigation).
  if (csrf && navigator.sendBeacon) {
    window.addEventListener("pagehide", () => {
      navigator.sendBeacon("/activity/leave", new URLSearchParams({ path: location.pathname, csrf_token: csrf }));
    });
  }
  document.getElementById("theme").addEventListener("change", (e) => savePrefs({ theme: e.target.value }));
  document.getElementById("lang").addEventListener("change", (e) => savePrefs({ lang: e.target.value }));

  // Expiry warning: shown on the server's `expiring` event, never from a
  // timer of our own, so the server's clock is the only clock.
  const banner = document.getElementById("expiry-warning");
  let lastWarning = null;
  async function showWarning(w) {
    lastWarning = w;
    const minutes = Math.max(1, Math.ceil(w.seconds_left / 60));
    document.getElementById("expiry-text").textContent =
      minutes === 1 ? await text("expiry.one") : (await text("expiry.many")).replace("{n}", minutes);
    banner.hidden = false;
  }
  document.getElementById("stay-signed-in").addEventListener("click", async () => {
    const res = await fetch("/session/extend", { method: "POST", headers: { "x-csrf-token": csrf || "" } });
    if (res.ok) {
      banner.hidden = true;
      lastWarning = null;
    } else if (res.status === 401) {
      const p = await res.json().catch(() => ({}));
      leave(p.reason || "expired_idle");
    }
  });

  function leave(reason) {
    const here = location.pathname + location.search;
    location.assign(`/session-expired?reason=${encodeURIComponent(reason)}&return_to=${encodeURIComponent(here)}`);
  }

  // One events stream per open page. A page the browser keeps in its
  // back/forward cache would keep its stream (and, over HTTP/1.1, one of the six
  // connections a browser opens to a site): it is closed when the page is
  // hidden and opened again if the page comes back.
  let events = null;
  function connect() {
    if (events) return;
    events = new EventSource("/session/events");
    events.onopen = () => { root.dataset.sse = "open"; };
    events.onerror = () => { root.dataset.sse = "reconnecting"; };
    events.addEventListener("expiring", (e) => showWarning(JSON.parse(e.data)));
    for (const name of ["expired", "revoked"]) {
      events.addEventListener(name, (e) => {
        disconnect();
        leave(JSON.parse(e.data).reason);
      });
    }
    events.addEventListener("data-changed", async (e) => {
      const { scope } = JSON.parse(e.data);
      if (scope === "user" || scope === "unknown") {
        const res = await fetch("/preferences", { headers: { accept: "application/json" } });
        if (res.ok) applyPrefs(await res.json());
      }
    });
  }
  function disconnect() {
    if (events) events.close();
    events = null;
  }

  if (root.dataset.signedIn === "true") {
    connect();
    // Signing out here ends the session too: the form's own redirect decides
    // where the page goes, not the `revoked` event it causes.
    for (const form of document.querySelectorAll('form[action="/logout"], form[action="/account/sessions/end-all"]')) {
      form.addEventListener("submit", disconnect);
    }
    window.addEventListener("pagehide", disconnect);
    window.addEventListener("pageshow", (e) => { if (e.persisted) connect(); });
  }
})();
