import Foundation
import GatepostCatalog

/// `${variable}` patterns for delivered file names. The result is made safe like any received
/// name, so a pattern can never place a file outside its application's folder.
public enum RenamePattern {
    public static let variables = ["application", "date", "fileName", "id", "site", "time", "type"]

    static func unknownVariable(in pattern: String) -> String? {
        var rest = Substring(pattern)
        while let open = rest.range(of: "${") {
            guard let close = rest[open.upperBound...].firstIndex(of: "}") else { return String(rest[open.upperBound...]) }
            let name = String(rest[open.upperBound..<close])
            if !variables.contains(name) { return name }
            rest = rest[rest.index(after: close)...]
        }
        return nil
    }

    public static func apply(_ pattern: String, to record: TransferRecord, application: String) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC") ?? .current
        let parts = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: record.receivedAt)
        func two(_ value: Int?) -> String { String(format: "%02d", value ?? 0) }
        let values: [String: String] = [
            "application": application,
            "date": String(format: "%04d", parts.year ?? 0) + two(parts.month) + two(parts.day),
            "time": two(parts.hour) + two(parts.minute) + two(parts.second),
            "fileName": record.fileName ?? "file",
            "id": record.id,
            "site": record.site,
            "type": record.type.rawValue,
        ]
        var result = pattern
        for (name, value) in values {
            // A value never adds a path separator; the pattern's own are dropped by make().
            let flat = value.replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "\\", with: "_")
            result = result.replacingOccurrences(of: "${\(name)}", with: flat)
        }
        return SafeFileName.make(result)
    }
}
