import Foundation

/// A run's clock: the `now` it was given (a test's own, or the real time), moved on by the
/// real time the run has taken since. What a run stamps late in its course (a claim when its
/// delivery or send starts) is as late as it really is, on the caller's clock.
struct RunClock: Sendable {
    private let start: Date
    private let started = Date()

    init(startingAt start: Date) {
        self.start = start
    }

    var now: Date { start.addingTimeInterval(Date().timeIntervalSince(started)) }
}
