import Foundation

/// Shell globs (`*`, `?`, `[a-z]`, `[!0-9]`), case-insensitive, over the whole text: the
/// patterns of routes and of catalog searches. The matcher goes back only to the last `*`, so
/// it takes at most pattern × text steps, whoever wrote the pattern.
public enum Glob {
    /// The longest text a pattern is matched against; a longer one is cut (a header line is at
    /// most 998 characters anyway).
    static let maxText = 4096

    /// Whether `pattern` matches all of `text`.
    public static func matches(_ pattern: String, _ text: String) -> Bool {
        let pattern = Array(pattern.lowercased().unicodeScalars)
        let text = Array(text.lowercased().unicodeScalars.prefix(maxText))
        var p = 0, t = 0
        var star: Int?
        var starText = 0
        while t < text.count {
            if p < pattern.count, pattern[p] == "*" {
                star = p
                starText = t
                p += 1
            } else if p < pattern.count, let (matched, next) = single(pattern, at: p, text[t]), matched {
                p = next
                t += 1
            } else if let star {
                p = star + 1
                starText += 1
                t = starText
            } else {
                return false
            }
        }
        while p < pattern.count, pattern[p] == "*" { p += 1 }
        return p == pattern.count
    }

    /// Where the bracket expression opened at `opening` closes, as ``single(_:at:_:)`` reads
    /// it (a `]` first in the set, after an optional `!` or `^`, is a member); nil when it
    /// does not close (the `[` is then a literal).
    static func closingBracket(_ pattern: [Unicode.Scalar], opening: Int) -> Int? {
        var i = opening + 1
        if i < pattern.count, pattern[i] == "!" || pattern[i] == "^" { i += 1 }
        var first = true
        while i < pattern.count, pattern[i] != "]" || first {
            first = false
            i += i + 2 < pattern.count && pattern[i + 1] == "-" && pattern[i + 2] != "]" ? 3 : 1
        }
        return i < pattern.count ? i : nil
    }

    /// Whether `pattern[at]` (a literal, `?`, or a bracket expression) matches `character`,
    /// and where the pattern goes on; nil at a `*`.
    private static func single(_ pattern: [Unicode.Scalar], at index: Int, _ character: Unicode.Scalar) -> (Bool, Int)? {
        switch pattern[index] {
        case "*": return nil
        case "?": return (true, index + 1)
        case "[":
            var i = index + 1
            let negated = i < pattern.count && (pattern[i] == "!" || pattern[i] == "^")
            if negated { i += 1 }
            var found = false
            var first = true
            while i < pattern.count, pattern[i] != "]" || first {
                first = false
                if i + 2 < pattern.count, pattern[i + 1] == "-", pattern[i + 2] != "]" {
                    if pattern[i].value <= character.value, character.value <= pattern[i + 2].value { found = true }
                    i += 3
                } else {
                    if pattern[i] == character { found = true }
                    i += 1
                }
            }
            // No closing bracket: the `[` is a literal.
            guard i < pattern.count else { return (character == "[", index + 1) }
            return (found != negated, i + 1)
        case "\\" where index + 1 < pattern.count:
            return (pattern[index + 1] == character, index + 2)
        default:
            return (pattern[index] == character, index + 1)
        }
    }

}

/// What an operator types to find transfers by file name, sender or subject: a glob when it
/// holds one of `*?[`, else a substring; case-insensitive either way.
public struct TextPattern: Sendable, Hashable {
    public enum Kind: String, Sendable, Hashable {
        case glob, substring, exact
    }

    public var kind: Kind
    public var text: String

    /// A glob when `text` holds one of `*?[`, else a substring.
    public init(_ text: String) {
        self.text = text
        kind = text.contains(where: { "*?[".contains($0) }) ? .glob : .substring
    }

    /// The whole value, without case.
    public static func exactly(_ text: String) -> TextPattern {
        var pattern = TextPattern(text)
        pattern.kind = .exact
        return pattern
    }

    public func matches(_ value: String?) -> Bool {
        Self.matches(kind: kind, pattern: text, value: value ?? "")
    }

    /// Texts every value this pattern matches contains, without case: the whole text of a
    /// substring or exact pattern, the runs of literal characters between a glob's wildcards
    /// and bracket expressions (a `\\`-escaped character is a literal). An index of substrings
    /// narrows a search to the values holding all of them, then ``matches(_:)`` decides.
    public var requiredLiterals: [String] {
        guard kind == .glob else { return text.isEmpty ? [] : [text] }
        var literals: [String] = []
        var run = String.UnicodeScalarView()
        func endRun() {
            if !run.isEmpty { literals.append(String(run)) }
            run = String.UnicodeScalarView()
        }
        let scalars = Array(text.unicodeScalars)
        var index = 0
        while index < scalars.count {
            switch scalars[index] {
            case "*", "?", "[":
                // What a bracket holds is one character of a set, not a literal: the run ends
                // there and the characters up to the closing bracket are passed over (an
                // unclosed `[` only shortens the literals, which narrows less, never wrongly).
                endRun()
                if scalars[index] == "[", let close = Glob.closingBracket(scalars, opening: index) {
                    index = close
                }
            case "\\" where index + 1 < scalars.count:
                index += 1
                run.append(scalars[index])
            default:
                run.append(scalars[index])
            }
            index += 1
        }
        endRun()
        return literals
    }

    static func matches(kind: Kind, pattern: String, value: String) -> Bool {
        switch kind {
        case .glob:
            return Glob.matches(pattern, value)
        case .substring:
            if pattern.isEmpty { return true }
            // A search runs this for every row it looks at: ASCII (most file names, addresses
            // and subjects) is compared byte by byte, without building strings; anything else
            // the Unicode way.
            if let found = ASCIIText.contains(value, pattern) { return found }
            return value.range(of: pattern, options: .caseInsensitive) != nil
        case .exact:
            if let equal = ASCIIText.equal(value, pattern) { return equal }
            return value.compare(pattern, options: .caseInsensitive) == .orderedSame
        }
    }
}

/// Case-insensitive comparisons of ASCII text without building new strings; nil when either
/// side is not ASCII (the caller then compares the Unicode way).
enum ASCIIText {
    static func folded(_ byte: UInt8) -> UInt8 {
        byte >= 0x41 && byte <= 0x5A ? byte | 0x20 : byte
    }

    static func contains(_ text: String, _ pattern: String) -> Bool? {
        var text = text, pattern = pattern
        return text.withUTF8 { haystack in
            pattern.withUTF8 { needle -> Bool? in
                guard !haystack.contains(where: { $0 >= 0x80 }), !needle.contains(where: { $0 >= 0x80 }) else { return nil }
                guard needle.count <= haystack.count else { return false }
                let first = folded(needle[0])
                var start = 0
                while start + needle.count <= haystack.count {
                    if folded(haystack[start]) == first {
                        var offset = 1
                        while offset < needle.count, folded(haystack[start + offset]) == folded(needle[offset]) { offset += 1 }
                        if offset == needle.count { return true }
                    }
                    start += 1
                }
                return false
            }
        }
    }

    static func equal(_ a: String, _ b: String) -> Bool? {
        var a = a, b = b
        return a.withUTF8 { left in
            b.withUTF8 { right -> Bool? in
                guard !left.contains(where: { $0 >= 0x80 }), !right.contains(where: { $0 >= 0x80 }) else { return nil }
                return left.count == right.count && zip(left, right).allSatisfy { folded($0) == folded($1) }
            }
        }
    }
}
