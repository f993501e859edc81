import GatepostWire
import NIOCore
import NIOEmbedded
import Synchronization
import Testing

/// The timeout blames the server only: time counts while the session waits and nothing has
/// arrived, or while the server's window stays shut; never while the session itself is late.
/// Driven in virtual time on an embedded event loop.
@Suite struct ServerSilenceTimeoutTests {
    final class Harness {
        let loop = EmbeddedEventLoop()
        let channel: EmbeddedChannel
        let handler: ServerSilenceTimeout

        init(timeout: TimeAmount = .seconds(10), clock: ServerSilenceTimeout.Clock? = nil) throws {
            let loop = loop
            handler = ServerSilenceTimeout(timeout: timeout, clock: clock ?? { [loop] in loop.now })
            channel = EmbeddedChannel(loop: loop)
            try channel.pipeline.syncOperations.addHandler(handler)
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 110)).wait()
        }

        var isClosed: Bool { !channel.isActive }

        func serverSends(_ text: String) throws {
            try channel.writeInbound(ByteBuffer(string: text))
            _ = try channel.readInbound(as: ByteBuffer.self)
        }

        /// The error the handler raised, if any.
        func raisedFired() -> Bool {
            do {
                try channel.throwIfErrorCaught()
                return false
            } catch {
                return error is ServerSilenceTimeout.Fired
            }
        }
    }

    @Test func aServerSilentWhileWeWaitTimesOut() throws {
        let harness = try Harness()
        harness.handler.beginWaiting()
        harness.loop.advanceTime(by: .seconds(9))
        #expect(!harness.isClosed)
        harness.loop.advanceTime(by: .seconds(2) + .milliseconds(500))
        #expect(harness.isClosed)
        #expect(harness.handler.hasFired)
        #expect(harness.raisedFired())
    }

    @Test func ourOwnDelayBetweenCommandsNeverCounts() throws {
        let harness = try Harness()
        // The session is busy (or starved of threads) for ten timeouts: not the server's fault.
        harness.loop.advanceTime(by: .seconds(100))
        #expect(!harness.isClosed)
        // Then it waits, and the server answers within the timeout.
        harness.handler.beginWaiting()
        harness.loop.advanceTime(by: .seconds(8))
        try harness.serverSends("+OK\r\n")
        harness.handler.endWaiting()
        #expect(!harness.isClosed)
        #expect(!harness.handler.hasFired)
    }

    @Test func bytesThatArrivedButWereNotYetTakenNeverCount() throws {
        let harness = try Harness()
        harness.handler.beginWaiting()
        harness.loop.advanceTime(by: .seconds(1))
        // The answer arrives, but the session's task does not run for a long time (a busy
        // pool): it has its answer, so the wait is over as far as the server is concerned.
        try harness.serverSends("+OK 2 messages\r\n")
        harness.loop.advanceTime(by: .seconds(60))
        #expect(!harness.isClosed)
    }

    @Test func eachWaitStartsItsOwnClock() throws {
        let harness = try Harness()
        for _ in 0..<5 {
            harness.handler.beginWaiting()
            harness.loop.advanceTime(by: .seconds(7))
            try harness.serverSends("+OK\r\n")
            harness.handler.endWaiting()
        }
        #expect(!harness.isClosed)
        harness.handler.beginWaiting()
        harness.loop.advanceTime(by: .seconds(11))
        #expect(harness.isClosed)
    }

    @Test func aLongerTimeoutForOneReplyApplies() throws {
        let harness = try Harness()
        harness.handler.setTimeout(.seconds(600))
        harness.handler.beginWaiting()
        harness.loop.advanceTime(by: .seconds(300))
        #expect(!harness.isClosed)
        harness.loop.advanceTime(by: .seconds(301))
        #expect(harness.isClosed)
    }

    @Test func aServerThatTakesNoneOfOurBytesTimesOut() throws {
        let harness = try Harness()
        harness.channel.isWritable = false
        harness.channel.pipeline.fireChannelWritabilityChanged()
        harness.loop.advanceTime(by: .seconds(9))
        #expect(!harness.isClosed)
        // Its window opens and shuts again: progress, a new clock.
        harness.channel.isWritable = true
        harness.channel.pipeline.fireChannelWritabilityChanged()
        harness.channel.isWritable = false
        harness.channel.pipeline.fireChannelWritabilityChanged()
        harness.loop.advanceTime(by: .seconds(9))
        #expect(!harness.isClosed)
        harness.loop.advanceTime(by: .seconds(2) + .milliseconds(500))
        #expect(harness.isClosed)
    }

    @Test func theExpiryRuleAlone() throws {
        let harness = try Harness(timeout: .seconds(5))
        let start = harness.loop.now
        #expect(!harness.handler.isExpired(at: start + .seconds(3600)))
        harness.handler.beginWaiting()
        #expect(!harness.handler.isExpired(at: start + .seconds(4)))
        #expect(harness.handler.isExpired(at: start + .seconds(5)))
        harness.handler.endWaiting()
        #expect(!harness.handler.isExpired(at: start + .seconds(3600)))
    }
}

extension ServerSilenceTimeoutTests {
    /// Wall time that moves on while the event loop does not run.
    final class StalledClock: Sendable {
        private let offset = Mutex(TimeAmount.zero)
        let loop: EmbeddedEventLoop

        init(loop: EmbeddedEventLoop) {
            self.loop = loop
        }

        func stall(for amount: TimeAmount) {
            offset.withLock { $0 = $0 + amount }
        }

        var now: NIODeadline { loop.now + offset.withLock { $0 } }
    }

    /// A connected channel whose session waits for the server, with a 4 s timeout.
    static func waitingWithStalledClock() throws -> (EmbeddedEventLoop, StalledClock, ServerSilenceTimeout, EmbeddedChannel) {
        let loop = EmbeddedEventLoop()
        let clock = StalledClock(loop: loop)
        let handler = ServerSilenceTimeout(timeout: .seconds(4), clock: { clock.now })
        let channel = EmbeddedChannel(handler: handler, loop: loop)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 110)).wait()
        handler.beginWaiting()
        return (loop, clock, handler, channel)
    }

    /// An event loop that could not run for a while (another channel's work held it) may have
    /// the server's answer waiting behind the check: the late check does not fire, the next
    /// one, after the reads, judges.
    @Test func aCheckHeldUpWithTheEventLoopDoesNotFireBeforeTheReadsBehindIt() throws {
        let (loop, clock, handler, channel) = try Self.waitingWithStalledClock()
        // The loop is held up for 30 s; when it runs again, the overdue check comes first.
        clock.stall(for: .seconds(30))
        loop.advanceTime(by: .seconds(1))
        #expect(channel.isActive)
        // Then the answer that was waiting is read.
        try channel.writeInbound(ByteBuffer(string: "+OK\r\n"))
        handler.endWaiting()
        loop.advanceTime(by: .seconds(30))
        #expect(channel.isActive)
        #expect(!handler.hasFired)
    }

    @Test func aServerStillSilentAfterTheHoldUpTimesOut() throws {
        let (loop, clock, handler, channel) = try Self.waitingWithStalledClock()
        clock.stall(for: .seconds(30))
        loop.advanceTime(by: .seconds(1))
        #expect(channel.isActive)
        loop.advanceTime(by: .seconds(2))
        #expect(!channel.isActive)
        #expect(handler.hasFired)
    }
}
