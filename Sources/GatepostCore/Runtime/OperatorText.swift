import Foundation

/// Sizes and times as every operator-facing output writes them (the command line, the
/// console): `1.5 MiB`, `2026-11-28T01:16:00Z`.
public enum OperatorText {
    public static func bytes(_ count: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(count)
        var unit = 0
        while value >= 1024, unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? "\(count) B" : String(format: "%.1f %@", value, units[unit])
    }

    /// ISO 8601 in UTC, to the second.
    public static func timestamp(_ date: Date) -> String {
        date.formatted(.iso8601)
    }
}
