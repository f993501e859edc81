/// Durations as an operator reads and writes them in site files: `5m`, `1h30m`, `82s`, `1.5s`,
/// never `81.83632939375411 seconds`.
public enum DurationText {
    /// `30s`, `5m`, `1h`, `1d`, `250ms`, or a plain number of seconds; nil when it is none of
    /// these or not positive.
    public static func parse(_ text: String) -> Duration? {
        let text = text.trimmingCharacters(in: .whitespaces).lowercased()
        let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600), ("d", 86400)]
        for (suffix, factor) in units where text.hasSuffix(suffix) {
            if let number = Double(text.dropLast(suffix.count)), number > 0 {
                return .milliseconds(Int64(number * factor * 1000))
            }
        }
        if let seconds = Double(text), seconds > 0 { return .milliseconds(Int64(seconds * 1000)) }
        return nil
    }

    public static func describe(_ duration: Duration) -> String {
        let total = duration.timeInterval
        if total < 0 { return "-" + describe(.zero - duration) }
        if total < 10 {
            let tenths = (total * 10).rounded() / 10
            return tenths == tenths.rounded() ? "\(Int(tenths))s" : "\(tenths)s"
        }
        var rest = Int(total.rounded())
        var parts: [String] = []
        for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] where rest >= size {
            parts.append("\(rest / size)\(unit)")
            rest %= size
        }
        return parts.joined()
    }
}

extension Duration {
    /// In seconds, for `Date` arithmetic.
    public var timeInterval: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
