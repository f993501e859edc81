/// Durations as an operator reads and writes them in site files: `5m`, `1h30m`, `82s`, `1.5s`,
/// never `81.83632939375411 seconds`.
public enum DurationText {
    public static func describe(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        let total = Double(seconds) + Double(attoseconds) / 1e18
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
