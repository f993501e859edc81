import Foundation
import GatepostCatalog

/// What an application's command gets: a clean environment, never gatepost's own (which holds
/// partner passwords given as `${ENV}` references and whatever else the service manager set).
/// It is an allowlist of the variables programs need to run, the transfer's fields as
/// `GATEPOST_*`, and the application's own `environment:` map.
public enum CommandEnvironment {
    /// Passed from gatepost's environment when set; `LC_*` too.
    public static let inherited: Set<String> = ["PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "USER", "LOGNAME"]

    /// The transfer's fields, by name.
    public static let fieldNames = [
        "GATEPOST_ID", "GATEPOST_SITE", "GATEPOST_TYPE", "GATEPOST_FILE_NAME", "GATEPOST_APPLICATION", "GATEPOST_SENDER",
        "GATEPOST_SUBJECT", "GATEPOST_MESSAGE_ID", "GATEPOST_SHA256", "GATEPOST_SIZE", "GATEPOST_PATH", "GATEPOST_SPOOL_PATH",
    ]

    /// The transfer's fields for a delivery to `deliveredPath`. Received fields come from
    /// strangers: control characters are dropped.
    static func fields(of record: TransferRecord, application: String, deliveredPath: String) -> [String: String] {
        let values: [String: String?] = [
            "GATEPOST_ID": record.id, "GATEPOST_SITE": record.site, "GATEPOST_TYPE": record.type.rawValue,
            "GATEPOST_FILE_NAME": record.fileName, "GATEPOST_APPLICATION": application,
            "GATEPOST_SENDER": record.sender, "GATEPOST_SUBJECT": record.subject, "GATEPOST_MESSAGE_ID": record.messageId,
            "GATEPOST_SHA256": record.sha256, "GATEPOST_SIZE": String(record.size), "GATEPOST_PATH": deliveredPath,
            "GATEPOST_SPOOL_PATH": record.path,
        ]
        return values.mapValues { value in
            value.map { String($0.unicodeScalars.filter { $0.value >= 0x20 && $0 != "\u{7F}" && !(0x80...0x9F).contains($0.value) }.map(Character.init)) } ?? ""
        }
    }

    /// The command's whole environment.
    static func make(parent: [String: String], fields: [String: String], application: [String: String]) -> [String: String] {
        var environment = parent.filter { inherited.contains($0.key) || $0.key.hasPrefix("LC_") }
        environment.merge(application) { $1 }
        environment.merge(fields) { $1 }
        return environment
    }

    /// `argument` with `${GATEPOST_*}` replaced by the transfer's fields.
    static func expand(_ argument: String, fields: [String: String]) -> String {
        guard argument.contains("${GATEPOST_") else { return argument }
        var result = argument
        for (name, value) in fields {
            result = result.replacingOccurrences(of: "${\(name)}", with: value)
        }
        return result
    }

    /// The first `${GATEPOST_...}` in `argument` that is not a field, if any.
    static func unknownField(in argument: String) -> String? {
        var rest = Substring(argument)
        while let open = rest.range(of: "${GATEPOST_") {
            guard let close = rest[open.lowerBound...].firstIndex(of: "}") else { return String(rest[open.lowerBound...].dropFirst(2)) }
            let name = String(rest[rest.index(open.lowerBound, offsetBy: 2)..<close])
            if !fieldNames.contains(name) { return name }
            rest = rest[rest.index(after: close)...]
        }
        return nil
    }
}
