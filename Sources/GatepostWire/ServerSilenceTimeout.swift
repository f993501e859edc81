import NIOCore
import Synchronization

/// Fails a connection when the server, not we, is the one holding it up: it has sent nothing
/// for `timeout` while the session was waiting for its answer, or it has taken none of our bytes
/// for `timeout` while we had more to send.
///
/// A plain idle timer (time since the last byte read or written) counts our own delays too: a
/// session whose task waits for a thread of a busy concurrency pool, or whose reads are held
/// back by its own backpressure, sends its next command late, and the timer blames a server
/// that was never asked. Here the clock runs only while the session says it is waiting
/// (``beginWaiting()`` before it awaits the next inbound bytes, ``endWaiting()`` after), and
/// only until bytes arrive: bytes that came but were not yet taken are ours to take, however
/// late. On the sending side it runs while the channel is not writable, i.e. while the
/// server's receive window stays shut.
///
/// When it fires, the channel gets ``Fired`` as an error and is closed, which ends the inbound
/// stream the session reads from; ``hasFired`` lets the session say "timeout" even when the
/// close reaches it first.
public final class ServerSilenceTimeout: ChannelDuplexHandler, Sendable {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    public struct Fired: Error, Sendable {}

    /// Where time comes from: the real clock, or a test's.
    public typealias Clock = @Sendable () -> NIODeadline

    private let now: Clock
    private let timeoutNanoseconds: Atomic<Int64>
    /// Uptime nanoseconds, or ``never``.
    private let waitingSince = Atomic<Int64>(never)
    private let unwritableSince = Atomic<Int64>(never)
    /// Reads so far, and how many there had been when the current wait began: a read since
    /// then answers the wait (counts, not times: a read and a wait can share a clock tick).
    private let reads = Atomic<UInt64>(0)
    private let readsWhenWaitBegan = Atomic<UInt64>(0)
    private static let never = Int64.min
    private let fired = Atomic<Bool>(false)
    private let check = Mutex<Scheduled<Void>?>(nil)

    public init(timeout: TimeAmount, clock: @escaping Clock = { NIODeadline.now() }) {
        self.now = clock
        self.timeoutNanoseconds = Atomic(timeout.nanoseconds)
    }

    public var hasFired: Bool { fired.load(ordering: .acquiring) }

    /// The session is about to wait for the server's next bytes.
    public func beginWaiting() {
        // The count first: whoever sees the new start sees the count that goes with it.
        readsWhenWaitBegan.store(reads.load(ordering: .acquiring), ordering: .releasing)
        waitingSince.store(Self.stamp(now()), ordering: .releasing)
    }

    /// The session has its bytes (or stopped waiting).
    public func endWaiting() {
        waitingSince.store(Self.never, ordering: .releasing)
    }

    /// A new timeout from now on (SMTP waits longer for the reply to a whole message).
    public func setTimeout(_ timeout: TimeAmount) {
        timeoutNanoseconds.store(timeout.nanoseconds, ordering: .releasing)
    }

    // MARK: The channel side (the event loop's thread)

    public func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { scheduleCheck(context: context) }
    }

    public func channelActive(context: ChannelHandlerContext) {
        scheduleCheck(context: context)
        context.fireChannelActive()
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        cancelCheck()
    }

    public func channelInactive(context: ChannelHandlerContext) {
        cancelCheck()
        context.fireChannelInactive()
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        reads.wrappingAdd(1, ordering: .acquiringAndReleasing)
        bytesDelivered.wrappingAdd(unwrapInboundIn(data).readableBytes, ordering: .relaxed)
        context.fireChannelRead(data)
    }

    /// Bytes passed on to the session so far (after TLS, decrypted): ``Wire/startTLS(on:context:serverName:silence:)``
    /// reads it on the event loop to tell what arrived in clear before the handshake.
    let bytesDelivered = Atomic<Int>(0)

    /// The first error the pipeline reported (a failed TLS handshake, say): when the connection
    /// then closes, this is the cause to report, not the close.
    public var caughtError: (any Error)? { firstError.withLock { $0 } }
    private let firstError = Mutex<(any Error)?>(nil)

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        firstError.withLock { first in
            if first == nil { first = error }
        }
        context.fireErrorCaught(error)
    }

    /// ``bytesDelivered`` for tests that wait for bytes to reach the session's stream.
    public var bytesDeliveredSoFar: Int { bytesDelivered.load(ordering: .relaxed) }

    public func channelWritabilityChanged(context: ChannelHandlerContext) {
        unwritableSince.store(context.channel.isWritable ? Self.never : Self.stamp(now()), ordering: .releasing)
        context.fireChannelWritabilityChanged()
    }

    /// Whether the server has held us up for the whole timeout at `instant` (pure, for tests
    /// and for the periodic check).
    public func isExpired(at instant: NIODeadline) -> Bool {
        let current = Self.stamp(instant)
        let timeout = timeoutNanoseconds.load(ordering: .acquiring)
        let waiting = waitingSince.load(ordering: .acquiring)
        if waiting != Self.never, reads.load(ordering: .acquiring) == readsWhenWaitBegan.load(ordering: .acquiring),
           current - waiting >= timeout {
            return true
        }
        let unwritable = unwritableSince.load(ordering: .acquiring)
        return unwritable != Self.never && current - unwritable >= timeout
    }

    private func scheduleCheck(context: ChannelHandlerContext) {
        // A quarter of the timeout, at most a second: fires at most that late.
        let period = TimeAmount.nanoseconds(max(5_000_000, min(1_000_000_000, timeoutNanoseconds.load(ordering: .acquiring) / 4)))
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        let due = now() + period
        let task = context.eventLoop.scheduleTask(in: period) { [self] in
            let context = loopBound.value
            guard context.channel.isActive else { return }
            let instant = now()
            // Run much later than due: the event loop itself was held up, and the server's
            // bytes may be waiting behind this check. Look again once they have been read.
            if instant - due > period {
                scheduleCheck(context: context)
                return
            }
            if isExpired(at: instant) {
                fired.store(true, ordering: .releasing)
                context.fireErrorCaught(Fired())
                context.close(promise: nil)
            } else {
                scheduleCheck(context: context)
            }
        }
        check.withLock { $0 = task }
    }

    private func cancelCheck() {
        check.withLock {
            $0?.cancel()
            $0 = nil
        }
    }

    private static func stamp(_ deadline: NIODeadline) -> Int64 {
        Int64(truncatingIfNeeded: deadline.uptimeNanoseconds)
    }
}
