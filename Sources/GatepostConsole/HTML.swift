import Foundation
import GatepostCore
import Hummingbird

/// Server-rendered pages: text escaped where it is written, one stylesheet, no script needed.
enum HTML {
    /// Escapes text for element content and attribute values.
    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for character in text.unicodeScalars {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default:
                // Control characters from a partner's header never reach the page as such.
                if character.value < 0x20, character != "\n", character != "\t" { out += "\u{FFFD}" } else { out.unicodeScalars.append(character) }
            }
        }
        return out
    }

    /// A query value or path segment.
    static func component(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? ""
    }

    static func timestamp(_ date: Date?) -> String {
        date.map(OperatorText.timestamp) ?? "-"
    }

    static func bytes(_ count: Int64) -> String {
        OperatorText.bytes(count)
    }

    /// A whole page: the title, the navigation (with who is logged in), the body.
    /// `refreshSeconds`: the page reloads itself (the dashboard's live view, without script).
    static func page(_ title: String, identity: ConsoleIdentity?, csrf: String?, body: String, refreshSeconds: Int? = nil) -> Response {
        let user = identity.map { identity in
            let logout = identity.credential == .session
                ? "<form method=post action=/logout class=inline>\(csrfField(csrf))<button>Log out</button></form>" : ""
            return "<span class=who>\(escape(identity.actor)) (\(identity.role.rawValue))</span> \(logout)"
        } ?? ""
        let html = """
        <!doctype html>
        <html lang=en><head><meta charset=utf-8><meta name=viewport content="width=device-width, initial-scale=1">
        \(refreshSeconds.map { "<meta http-equiv=refresh content=\($0)>" } ?? "")<title>\(escape(title)) · Gatepost</title><style>\(stylesheet)</style></head>
        <body><header><a href=/ class=brand>Gatepost</a><nav><a href=/>Dashboard</a><a href=/transfers>Transfers</a>\
        <a href="/transfers?direction=out">Outbound</a><a href=/outbox>Outbox</a></nav>\(user)</header>
        <main><h1>\(escape(title))</h1>
        \(body)
        </main></body></html>
        """
        return Response(
            status: .ok,
            headers: [
                .contentType: "text/html; charset=utf-8",
                // Nothing of another origin runs or frames these pages.
                .contentSecurityPolicy: "default-src 'self'; style-src 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
                .init("X-Content-Type-Options")!: "nosniff",
                .init("Referrer-Policy")!: "no-referrer",
                .cacheControl: "no-store",
            ],
            body: .init(byteBuffer: ByteBuffer(string: html))
        )
    }

    static func csrfField(_ csrf: String?) -> String {
        "<input type=hidden name=csrf value=\"\(escape(csrf ?? ""))\">"
    }

    /// A button that POSTs to `action` with the CSRF token.
    static func button(_ label: String, action: String, csrf: String?, extra: String = "", danger: Bool = false) -> String {
        "<form method=post action=\"\(escape(action))\" class=inline>\(csrfField(csrf))\(extra)<button\(danger ? " class=danger" : "")>\(escape(label))</button></form>"
    }

    static func redirect(_ location: String) -> Response {
        Response(status: .seeOther, headers: [.location: location])
    }

    static func table(_ headers: [String], _ rows: [[String]]) -> String {
        let head = headers.map { "<th>\(escape($0))</th>" }.joined()
        let body = rows.map { "<tr>" + $0.map { "<td>\($0)</td>" }.joined() + "</tr>" }.joined(separator: "\n")
        return "<table><thead><tr>\(head)</tr></thead><tbody>\(body)</tbody></table>"
    }

    static func fields(_ pairs: [(String, String?)]) -> String {
        "<dl>" + pairs.map { "<dt>\(escape($0.0))</dt><dd>\(escape($0.1 ?? "-"))</dd>" }.joined() + "</dl>"
    }

    /// Bars of one value per label, drawn on the server.
    static func barChart(_ values: [(String, Int)], width: Int = 360) -> String {
        guard let largest = values.map(\.1).max(), largest > 0 else { return "<p class=muted>Nothing received today.</p>" }
        let rowHeight = 18
        let labelWidth = 120
        var svg = "<svg role=img aria-label=\"today's volume per site\" width=\(width) height=\(values.count * rowHeight + 4) xmlns=\"http://www.w3.org/2000/svg\">"
        for (index, (label, value)) in values.enumerated() {
            let y = index * rowHeight + 2
            let barWidth = max(1, (width - labelWidth - 50) * value / largest)
            svg += "<text x=0 y=\(y + 13) font-size=12>\(escape(String(label.prefix(16))))</text>"
            svg += "<rect x=\(labelWidth) y=\(y + 2) width=\(barWidth) height=\(rowHeight - 6) fill=\"#3b6ea5\"/>"
            svg += "<text x=\(labelWidth + barWidth + 4) y=\(y + 13) font-size=12>\(value)</text>"
        }
        return svg + "</svg>"
    }

    static let stylesheet = """
    body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
    header{display:flex;gap:1.5em;align-items:center;padding:.6em 1.2em;background:#1d2330;color:#fff}
    header a{color:#fff;text-decoration:none;margin-right:1em}.brand{font-weight:700}.who{margin-left:auto}
    main{padding:1em 1.5em}h1{font-size:1.4em}table{border-collapse:collapse;width:100%;background:#fff}
    th,td{border-bottom:1px solid #dde1e7;padding:.35em .5em;text-align:left;vertical-align:top}
    th{background:#eef1f5}.attention td{background:#fff3f0}.bad{color:#b3261e;font-weight:600}.ok{color:#1e7b34}
    .muted{color:#6b7280}.inline{display:inline}button{cursor:pointer}.danger{color:#b3261e}
    dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em;background:#fff;padding:.8em}dt{font-weight:600}
    pre{background:#fff;padding:.8em;overflow:auto;max-height:30em}form.search input{margin-right:.4em}
    """
}
