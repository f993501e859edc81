import Foundation
import GatepostCatalog

/// A file a partner is expected to send on a schedule (`expect:` in its site file): a file name
/// glob, the days, the time it must have come by, in the partner's time zone.
public struct ExpectedArrival: Sendable, Hashable {
    /// A glob over the received file's name, without case.
    public var fileName: String
    /// Calendar weekdays: 1 Sunday ... 7 Saturday.
    public var weekdays: Set<Int>
    public var hour: Int
    public var minute: Int
    public var timeZone: TimeZone

    public init(fileName: String, weekdays: Set<Int>, hour: Int, minute: Int, timeZone: TimeZone) {
        self.fileName = fileName
        self.weekdays = weekdays
        self.hour = hour
        self.minute = minute
        self.timeZone = timeZone
    }

    /// Where the rule stands at `now`: the last deadline passed, and the one before it (the
    /// file for the last deadline is one received after the one before). Nil when no day is
    /// scheduled.
    public func lastWindow(at now: Date) -> (start: Date, deadline: Date)? {
        let deadlines = self.deadlines(atOrBefore: now, count: 2)
        guard deadlines.count == 2 else { return nil }
        return (deadlines[1], deadlines[0])
    }

    /// The last `count` deadlines at or before `now`, newest first.
    func deadlines(atOrBefore now: Date, count: Int) -> [Date] {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        var found: [Date] = []
        var day = calendar.startOfDay(for: now)
        // Two weeks back covers any set of weekdays twice.
        for _ in 0..<15 where found.count < count {
            if weekdays.contains(calendar.component(.weekday, from: day)),
               let deadline = calendar.date(bySettingHour: hour, minute: minute, second: 0, of: day, matchingPolicy: .nextTime, repeatedTimePolicy: .first, direction: .forward),
               deadline <= now {
                found.append(deadline)
            }
            guard let previous = calendar.date(byAdding: .day, value: -1, to: day) else { break }
            day = calendar.startOfDay(for: previous)
        }
        return found
    }

    /// `every:` as written: `daily`, `weekdays`, `weekends`, or days such as `mon, wed, fri`.
    static func weekdays(_ text: String) -> Set<Int>? {
        let names = ["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"]
        switch text.lowercased().trimmingCharacters(in: .whitespaces) {
        case "daily", "every day": return Set(1...7)
        case "weekdays": return Set(2...6)
        case "weekends": return [1, 7]
        default:
            var days = Set<Int>()
            for part in text.lowercased().split(whereSeparator: { $0 == "," || $0 == " " }) {
                guard let index = names.firstIndex(where: { $0 == part || $0.prefix(3) == part }) else { return nil }
                days.insert(index + 1)
            }
            return days.isEmpty ? nil : days
        }
    }
}

extension SiteLoader {
    /// `expect:` of a remote site.
    func expectedArrivals(_ node: ConfigNode?) throws -> [ExpectedArrival] {
        guard let node else { return [] }
        return try node.sequence().map { ruleNode in
            let map = try ruleNode.mapping()
            try map.rejectUnknownKeys(["file_name", "every", "by", "timezone"])
            let everyNode = try map.require("every")
            let everyText = try everyNode.stringList().joined(separator: ",")
            guard let weekdays = ExpectedArrival.weekdays(everyText) else {
                throw everyNode.error("must be daily, weekdays, weekends or days such as [mon, wed, fri]")
            }
            let byNode = try map.require("by")
            let parts = try byNode.string().split(separator: ":")
            guard parts.count == 2, let hour = Int(parts[0]), let minute = Int(parts[1]), (0...23).contains(hour), (0...59).contains(minute) else {
                throw byNode.error("must be a time of day such as \"09:30\" (in quotes)")
            }
            var timeZone = TimeZone(identifier: "UTC") ?? .current
            if let zoneNode = map["timezone"] {
                let name = try zoneNode.nonEmptyString()
                guard let zone = TimeZone(identifier: name) else {
                    throw zoneNode.error("`\(name)` is not a time zone (an IANA name such as Europe/Paris, or UTC)")
                }
                timeZone = zone
            }
            return ExpectedArrival(
                fileName: try map.require("file_name").nonEmptyString(), weekdays: weekdays, hour: hour, minute: minute, timeZone: timeZone
            )
        }
    }
}
