import Foundation

/// Dates as operators type them on a command line, read strictly: ISO 8601 with or without a
/// time and a zone, and nothing else. `2026-11-27T17:40Z` is 17:40 UTC (not midnight), and
/// `2026-11-28 junk` is refused rather than read as the 28th.
public enum StrictDate {
    /// `YYYY-MM-DD` (midnight UTC), or `YYYY-MM-DD[T| ]HH:MM[:SS[.fraction]]` followed by `Z`,
    /// `±HH:MM`, `±HHMM` or nothing (UTC).
    public static func parse(_ text: String) -> Date? {
        let scalars = Array(text.utf8)
        var index = 0
        func digits(_ count: Int) -> Int? {
            guard index + count <= scalars.count else { return nil }
            var value = 0
            for byte in scalars[index..<(index + count)] {
                guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) else { return nil }
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
            }
            index += count
            return value
        }
        func expect(_ character: Character) -> Bool {
            guard index < scalars.count, scalars[index] == character.asciiValue else { return false }
            index += 1
            return true
        }
        guard let year = digits(4), expect("-"), let month = digits(2), expect("-"), let day = digits(2) else { return nil }
        var components = DateComponents(year: year, month: month, day: day, hour: 0, minute: 0, second: 0)
        var offsetSeconds = 0
        if index < scalars.count {
            guard expect("T") || expect(" ") else { return nil }
            guard let hour = digits(2), expect(":"), let minute = digits(2) else { return nil }
            components.hour = hour
            components.minute = minute
            if expect(":") {
                guard let second = digits(2) else { return nil }
                components.second = second
                if expect(".") {
                    let start = index
                    while index < scalars.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(scalars[index]) { index += 1 }
                    guard index > start else { return nil }
                    components.nanosecond = Int((Double("0." + String(decoding: scalars[start..<index], as: UTF8.self)) ?? 0) * 1e9)
                }
            }
            if index < scalars.count {
                if expect("Z") {
                    offsetSeconds = 0
                } else {
                    let sign: Int
                    if expect("+") { sign = 1 } else if expect("-") { sign = -1 } else { return nil }
                    guard let hours = digits(2) else { return nil }
                    _ = expect(":")
                    guard let minutes = digits(2), hours < 24, minutes < 60 else { return nil }
                    offsetSeconds = sign * (hours * 3600 + minutes * 60)
                }
            }
        }
        guard index == scalars.count else { return nil }
        guard (1...12).contains(month), (1...31).contains(day), (0...23).contains(components.hour ?? 0),
              (0...59).contains(components.minute ?? 0), (0...60).contains(components.second ?? 0) else { return nil }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(secondsFromGMT: offsetSeconds) ?? TimeZone(identifier: "UTC") ?? calendar.timeZone
        guard let date = calendar.date(from: components),
              calendar.component(.day, from: date) == day else { return nil }  // 2026-02-30 is no date
        return date
    }
}
