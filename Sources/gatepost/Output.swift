import Foundation
import GatepostCatalog
import GatepostCore

/// Plain-text tables: columns as wide as their widest cell, no wrapping.
struct TextTable {
    var headers: [String]
    var rows: [[String]] = []

    /// A two-column FIELD / VALUE table, for `show` commands.
    static func fields(_ pairs: [(String, String)]) -> TextTable {
        TextTable(headers: ["FIELD", "VALUE"], rows: pairs.map { [$0.0, $0.1] })
    }

    /// Every cell made safe for a terminal first: no control character or line break of a
    /// partner's text can forge a row or drive the terminal.
    func render() -> String {
        let headers = headers.map { Terminal.safe($0) }
        let rows = rows.map { $0.map { Terminal.safe($0) } }
        var widths = headers.map(\.count)
        for row in rows {
            for (index, cell) in row.enumerated() where index < widths.count {
                widths[index] = max(widths[index], cell.count)
            }
        }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { index, cell in
                index == cells.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }
        return ([line(headers)] + rows.map(line)).joined(separator: "\n")
    }
}

enum OutputFormat: String, CaseIterable {
    case table, json
}

enum Formatting {
    static func json<T: Encodable>(_ value: T) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    static func timestamp(_ date: Date) -> String {
        OperatorText.timestamp(date)
    }

    static func bytes(_ count: Int64) -> String {
        OperatorText.bytes(count)
    }

    static func duration(_ duration: Duration) -> String {
        DurationText.describe(duration)
    }

    static func transferTable(_ records: [TransferRecord]) -> String {
        var table = TextTable(headers: ["ID", "DIR", "TYPE", "FILE_NAME", "SITE", "APPLICATION", "STATE", "ACK", "SIZE", "RECEIVED", "SUBJECT"])
        for record in records {
            table.rows.append([
                record.id,
                record.direction.rawValue,
                record.type.rawValue,
                record.fileName ?? "-",
                record.site,
                record.application ?? "-",
                record.state.rawValue,
                record.ack.rawValue,
                String(record.size),
                timestamp(record.receivedAt),
                String((record.subject ?? "").prefix(50)),
            ])
        }
        return table.render()
    }

    /// RFC 4180 CSV: a header line, then one line per transfer; fields with a comma, quote or
    /// line break quoted, quotes doubled. Control characters become spaces (a spreadsheet is a
    /// terminal of sorts), and a leading = + - @ is quoted with a ' so no cell is a formula.
    static func transferCSV(_ records: [TransferRecord]) -> String {
        let headers = ["id", "direction", "type", "fileName", "site", "application", "state", "ack", "size", "receivedAt", "sender", "subject", "sha256", "classification", "error"]
        func cell(_ value: String?) -> String {
            var text = String((value ?? "").unicodeScalars.map { Terminal.needsReplacing($0) ? " " : Character($0) })
            if let first = text.first, "=+-@".contains(first) { text = "'" + text }
            guard text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" }) else { return text }
            return "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\""
        }
        var out = headers.joined(separator: ",") + "\r\n"
        for record in records {
            let fields: [String?] = [
                record.id, record.direction.rawValue, record.type.rawValue, record.fileName, record.site, record.application,
                record.state.rawValue, record.ack.rawValue, String(record.size), timestamp(record.receivedAt), record.sender,
                record.subject, record.sha256, record.classification, record.error,
            ]
            out += fields.map(cell).joined(separator: ",") + "\r\n"
        }
        return out
    }
}
