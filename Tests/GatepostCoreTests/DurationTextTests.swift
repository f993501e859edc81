import Testing
@testable import GatepostCore

@Suite struct DurationTextTests {
    @Test func durationsReadAsTheyAreWritten() {
        #expect(DurationText.describe(.seconds(300)) == "5m")
        #expect(DurationText.describe(.seconds(5400)) == "1h30m")
        #expect(DurationText.describe(.milliseconds(81_836)) == "1m22s")
        #expect(DurationText.describe(.milliseconds(1500)) == "1.5s")
        #expect(DurationText.describe(.seconds(2)) == "2s")
        #expect(DurationText.describe(.zero) == "0s")
        #expect(DurationText.describe(.seconds(90_061)) == "1d1h1m1s")
    }
}
