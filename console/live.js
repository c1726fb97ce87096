// SPDX-License-Identifier: MIT
// knock's live view: the Server-Sent Events of /live/stream into the feed
// table, newest first. Every value is set as text (textContent), never as
// markup: what a client sent cannot become an element here either.
"use strict";
(function () {
    const feed = document.querySelector("#feed tbody");
    const status = document.getElementById("live-status");
    const MAX_ROWS = 500;
    const KNOWN = ["received", "processing", "failed", "dead", "ignored", "handled", "pending",
                   "delivered", "running", "success", "tempfail", "timeout", "permanent",
                   "interrupted", "queued", "lost"];
    let shown = 0;

    function setStatus(state, text) {
        status.dataset.state = state;
        status.textContent = text;
    }

    function stamp(ms) {
        return new Date(ms || Date.now()).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
    }

    function cell(tr, text) {
        const td = document.createElement("td");
        td.textContent = text === null || text === undefined || text === "" ? "–" : String(text);
        tr.appendChild(td);
        return td;
    }

    function badge(tr, text) {
        const td = document.createElement("td");
        const span = document.createElement("span");
        span.className = "st st-" + (KNOWN.includes(text) ? text : "other");
        span.textContent = text === null || text === undefined ? "–" : String(text);
        td.appendChild(span);
        tr.appendChild(td);
    }

    function link(tr, path, id) {
        const td = document.createElement("td");
        if (id) {
            const a = document.createElement("a");
            a.href = path + "?id=" + encodeURIComponent(id);
            a.textContent = id;
            td.appendChild(a);
        } else {
            td.textContent = "–";
        }
        tr.appendChild(td);
    }

    function detail(parts) {
        return parts.filter(function (p) { return p !== null && p !== undefined && p !== ""; })
            .join(" · ");
    }

    function row(m) {
        const tr = document.createElement("tr");
        tr.className = "live-" + m.kind;
        switch (m.kind) {
        case "receipt": {
            const what = m.handshake ? "handshake" : m.duplicate ? "duplicate"
                : m.signature_valid ? "receipt" : "rejected";
            cell(tr, stamp(m.received_at));
            cell(tr, what);
            badge(tr, String(m.http_status));
            if (m.event_id) link(tr, "/event", m.event_id);
            else link(tr, "/delivery", m.id);
            cell(tr, detail([m.event_type, m.provider_event_id, m.verify_error]));
            break;
        }
        case "attempt":
            cell(tr, stamp(m.started_at));
            cell(tr, "attempt " + m.attempt);
            badge(tr, m.running ? "running" : m.outcome);
            link(tr, "/event", m.event_id);
            cell(tr, detail([m.event_type, m.running ? null : "event " + m.status,
                             m.exit_code !== null && m.exit_code !== undefined ? "exit " + m.exit_code : null,
                             m.http_status ? "HTTP " + m.http_status : null, m.error]));
            break;
        case "hook":
            cell(tr, stamp(m.at));
            cell(tr, "hook attempt");
            badge(tr, m.status ? String(m.status) : "no response");
            link(tr, "/event", m.event_id);
            cell(tr, detail([m.state, m.duration_ms + " ms", m.error]));
            break;
        case "audit":
            cell(tr, stamp(m.at));
            cell(tr, "operator");
            badge(tr, m.action);
            cell(tr, m.actor);
            cell(tr, m.counts);
            break;
        case "skipped":
            cell(tr, stamp());
            cell(tr, "…");
            cell(tr, "");
            cell(tr, "");
            cell(tr, m.receipts ? m.receipts + " more receipts not shown"
                : m.attempts + " more attempts not shown");
            break;
        case "dropped":
            cell(tr, stamp());
            cell(tr, "…");
            cell(tr, "");
            cell(tr, "");
            cell(tr, m.messages + " messages dropped: this page read them too slowly");
            break;
        default:
            return null;
        }
        return tr;
    }

    const source = new EventSource("/live/stream");
    source.onopen = function () { setStatus("open", "Connected; starting the feed…"); };
    source.addEventListener("ready", function () {
        setStatus("ready", "Live since " + stamp());
    });
    source.onmessage = function (e) {
        let m;
        try {
            m = JSON.parse(e.data);
        } catch (err) {
            return;
        }
        const tr = row(m);
        if (!tr) return;
        feed.insertBefore(tr, feed.firstChild);
        while (feed.rows.length > MAX_ROWS) feed.deleteRow(-1);
        shown++;
        document.body.dataset.shown = String(shown);
    };
    source.onerror = function () {
        setStatus("reconnecting", "Disconnected; reconnecting…");
    };
})();
