/// Durations as an operator reads and writes them in site files: `5m`, `1h30m`, `82s`, `1.5s`,
/// never `81.83632939375411 seconds`.
public enum DurationText {
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
