import Foundation
import Yams

/// A YAML node with the file and the dotted field path it came from, so every error can say
/// where it is. Strings get `${ENV}` substitution here, once, for every field.
struct ConfigNode {
    let node: Node
    let path: String
    let file: String
    let environment: [String: String]

    var line: Int? { node.mark.map { $0.line } }

    func error(_ message: String) -> SiteConfigurationError {
        SiteConfigurationError(file: file, line: line, field: path.isEmpty ? nil : path, message: message)
    }

    func mapping() throws -> ConfigMapping {
        guard case .mapping(let mapping) = node else { throw error("must be a mapping of `key: value` lines") }
        var entries: [(String, ConfigNode)] = []
        var seen = Set<String>()
        for (key, value) in mapping {
            guard case .scalar(let scalar) = key else {
                throw ConfigNode(node: key, path: path, file: file, environment: environment).error("keys must be plain names")
            }
            let childPath = path.isEmpty ? scalar.string : "\(path).\(scalar.string)"
            guard seen.insert(scalar.string).inserted else {
                throw ConfigNode(node: key, path: childPath, file: file, environment: environment).error("appears twice")
            }
            entries.append((scalar.string, ConfigNode(node: value, path: childPath, file: file, environment: environment)))
        }
        return ConfigMapping(owner: self, entries: entries)
    }

    /// The scalar as written, without substitution.
    func rawString() throws -> String {
        switch node {
        case .scalar(let scalar): return scalar.string
        default: throw error("must be a single value")
        }
    }

    func string() throws -> String {
        try substitute(rawString())
    }

    func nonEmptyString() throws -> String {
        let value = try string().trimmingCharacters(in: .whitespaces)
        guard !value.isEmpty else { throw error("must not be empty") }
        return value
    }

    /// The `${NAME}` references of this scalar whose variable is not set.
    func unsetVariables() -> [String] {
        guard let text = try? rawString(), text.contains("${") else { return [] }
        var missing: [String] = []
        var rest = Substring(text)
        while let open = rest.range(of: "${"), let close = rest[open.upperBound...].firstIndex(of: "}") {
            let name = String(rest[open.upperBound..<close])
            if environment[name] == nil { missing.append(name) }
            rest = rest[rest.index(after: close)...]
        }
        return missing
    }

    /// Replaces `${NAME}` with the environment variable; an unset variable is an error, never "".
    /// A name `leaving` accepts stays as written (a command's `${GATEPOST_FILE_NAME}`, expanded
    /// at delivery).
    func substitute(_ text: String, leaving: (String) -> Bool = { _ in false }) throws -> String {
        guard text.contains("${") else { return text }
        var result = ""
        var rest = Substring(text)
        while let open = rest.range(of: "${") {
            result += rest[rest.startIndex..<open.lowerBound]
            guard let close = rest[open.upperBound...].firstIndex(of: "}") else {
                throw error("unterminated ${...}")
            }
            let name = String(rest[open.upperBound..<close])
            guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) else {
                throw error("`${\(name)}` is not a valid environment variable reference")
            }
            if leaving(name) {
                result += "${\(name)}"
                rest = rest[rest.index(after: close)...]
                continue
            }
            guard let value = environment[name] else {
                throw error("environment variable \(name) is not set")
            }
            result += value
            rest = rest[rest.index(after: close)...]
        }
        return result + rest
    }

    func bool() throws -> Bool {
        switch try string().lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: throw error("must be true or false")
        }
    }

    func int(in range: ClosedRange<Int>) throws -> Int {
        guard let value = Int(try string().trimmingCharacters(in: .whitespaces)), range.contains(value) else {
            throw error("must be a number from \(range.lowerBound) to \(range.upperBound)")
        }
        return value
    }

    /// `30s`, `5m`, `1h`, `1d`, or a plain number of seconds.
    func duration() throws -> Duration {
        guard let duration = DurationText.parse(try string()) else { throw error("must be a positive duration such as 30s, 5m or 1h") }
        return duration
    }

    /// `200MiB`, `10MB`, `512KiB`, `1GiB`, or a plain number of bytes.
    func byteSize() throws -> Int64 {
        let text = try string().trimmingCharacters(in: .whitespaces)
        let units: [(String, Int64)] = [
            ("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("TiB", 1 << 40),
            ("KB", 1_000), ("MB", 1_000_000), ("GB", 1_000_000_000), ("TB", 1_000_000_000_000), ("B", 1),
        ]
        for (suffix, factor) in units where text.hasSuffix(suffix) {
            if let number = Double(text.dropLast(suffix.count).trimmingCharacters(in: .whitespaces)), number > 0 {
                return Int64(number * Double(factor))
            }
        }
        if let bytes = Int64(text), bytes > 0 { return bytes }
        throw error("must be a size such as 200MiB, 10MB or a number of bytes")
    }

    /// A list, or a single value taken as a one-element list.
    func stringList() throws -> [String] {
        switch node {
        case .sequence(let sequence):
            return try sequence.enumerated().map { index, item in
                try ConfigNode(node: item, path: "\(path)[\(index)]", file: file, environment: environment).nonEmptyString()
            }
        case .scalar:
            return try string().split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        default:
            throw error("must be a list")
        }
    }

    func sequence() throws -> [ConfigNode] {
        guard case .sequence(let sequence) = node else { throw error("must be a list") }
        return sequence.enumerated().map { index, item in
            ConfigNode(node: item, path: "\(path)[\(index)]", file: file, environment: environment)
        }
    }
}

struct ConfigMapping {
    let owner: ConfigNode
    let entries: [(String, ConfigNode)]

    subscript(_ key: String) -> ConfigNode? {
        entries.first { $0.0 == key }?.1
    }

    func require(_ key: String) throws -> ConfigNode {
        guard let node = self[key] else {
            let field = owner.path.isEmpty ? key : "\(owner.path).\(key)"
            throw SiteConfigurationError(file: owner.file, line: owner.line, field: field, message: "is required")
        }
        return node
    }

    /// A misspelt key would otherwise be silently ignored, and its default used instead.
    func rejectUnknownKeys(_ allowed: Set<String>) throws {
        for (key, node) in entries where !allowed.contains(key) {
            throw node.error("unknown field (allowed here: \(allowed.sorted().joined(separator: ", ")))")
        }
    }
}
