import GatepostCatalog
#if canImport(Glibc)
import Glibc
#endif

/// The patterns of a route, matched in time bounded by the sizes of pattern and text: a route
/// is checked for every received transfer, with the poll's lock held, and a pattern that
/// backtracks (`^(a+)+$` against a 35-character subject took minutes with a backtracking
/// engine) must never hang delivery.
public enum RoutePatterns {
    /// The longest text a pattern is matched against; a longer subject is cut (a header line
    /// is at most 998 characters anyway).
    static let maxText = 4096
    static let maxPattern = 512

    /// A shell glob over the whole text, case-insensitive (``Glob``).
    public static func glob(_ pattern: String, _ text: String) -> Bool {
        Glob.matches(pattern, text)
    }

    /// Why `pattern` cannot be a subject pattern, or nil when it can: a POSIX extended regular
    /// expression, without back-references (the one feature that needs backtracking) and
    /// without large repetition counts (each copies the expression when compiled).
    public static func subjectPatternProblem(_ pattern: String) -> String? {
        if let feature = unsupportedFeature(pattern) { return feature }
        var regex = regex_t()
        let status = regcomp(&regex, pattern, REG_EXTENDED | REG_NOSUB)
        defer { if status == 0 { regfree(&regex) } }
        guard status == 0 else {
            var message = [CChar](repeating: 0, count: 256)
            regerror(status, &regex, &message, message.count)
            return "is not a valid POSIX extended regular expression (\(String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)))"
        }
        return nil
    }

    /// What in `pattern` would need backtracking or blow up when compiled: too long, a
    /// back-reference, a large repetition count. A scan, no compilation.
    static func unsupportedFeature(_ pattern: String) -> String? {
        guard pattern.utf8.count <= maxPattern else { return "is longer than \(maxPattern) bytes" }
        let scalars = Array(pattern.unicodeScalars)
        for (index, scalar) in scalars.enumerated() where scalar == "\\" && index + 1 < scalars.count {
            if ("1"..."9").contains(scalars[index + 1]) { return "uses a back-reference (\\\(scalars[index + 1])), which is not supported" }
        }
        var digits = ""
        var inBraces = false
        for scalar in scalars {
            switch scalar {
            case "{":
                inBraces = true
                digits = ""
            case "}", ",":
                if inBraces, let count = Int(digits), count > 255 { return "repeats more than 255 times" }
                digits = ""
                if scalar == "}" { inBraces = false }
            default:
                if inBraces { digits.unicodeScalars.append(scalar) }
            }
        }
        return nil
    }

    /// Whether `text` contains a match of `pattern` (a POSIX extended regular expression),
    /// by the C library's matcher, which does not backtrack without back-references.
    public static func subject(_ pattern: String, _ text: String) -> Bool {
        // Checked once more by scanning (a route built in code skips the site loader), then
        // compiled once: not twice per delivery.
        guard unsupportedFeature(pattern) == nil else { return false }
        var regex = regex_t()
        guard regcomp(&regex, pattern, REG_EXTENDED | REG_NOSUB) == 0 else { return false }
        defer { regfree(&regex) }
        return regexec(&regex, String(text.prefix(maxText)), 0, nil, 0) == 0
    }
}
