import Foundation
import Testing
@testable import GatepostCore

@Suite struct StrictDateTests {
    static func utc(_ text: String) -> Date? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.date(from: text)
    }

    @Test func iso8601WithOrWithoutTimeAndZone() {
        #expect(StrictDate.parse("2026-11-27") == Self.utc("2026-11-27T00:00:00.000Z"))
        #expect(StrictDate.parse("2026-11-27T17:40Z") == Self.utc("2026-11-27T17:40:00.000Z"), "17:40, not midnight")
        #expect(StrictDate.parse("2026-11-27T17:40") == Self.utc("2026-11-27T17:40:00.000Z"))
        #expect(StrictDate.parse("2026-11-27 17:40:05") == Self.utc("2026-11-27T17:40:05.000Z"))
        #expect(StrictDate.parse("2026-11-27T17:40:05+01:00") == Self.utc("2026-11-27T16:40:05.000Z"))
        #expect(StrictDate.parse("2026-11-27T17:40:05-0230") == Self.utc("2026-11-27T20:10:05.000Z"))
        #expect(StrictDate.parse("2026-11-27T17:40:05.250Z") == Self.utc("2026-11-27T17:40:05.250Z"))
    }

    @Test(arguments: [
        "2026-11-28 junk", "2026-11-28T", "2026-11-28T25:00Z", "2026-02-30", "2026-13-01", "26-11-28", "yesterday",
        "2026-11-28T10:00:00Zjunk", "2026-11-28T10:00+1", "", " 2026-11-28", "2026-11-28T10:00:00.Z",
    ])
    func anythingElseIsRefused(text: String) {
        #expect(StrictDate.parse(text) == nil, "\(text)")
    }
}
