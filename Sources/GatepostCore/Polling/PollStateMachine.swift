import GatepostCatalog
import GatepostPOP3

/// A message received and staged (its files in memory or in `tmp/`), waiting for its batch.
protocol PollStagedMessage: Sendable {
    var entry: POP3ListingEntry { get }
    /// Bytes on the wire: what a batch's size counts.
    var wireSize: Int64 { get }
}

/// The order of one poll's work after the listing, as a pure state machine: the driver
/// (``PollJob``) reports what happened (events in) and performs what the machine says next
/// (actions out). It holds the guarantee the product is sold on, where it can be tested without
/// a socket, a disk or a database:
///
/// - a message's DELE is sent only after the batch holding it is committed;
/// - batches are committed in the order received (each commit waits for the one before), and
///   once one fails no later batch's DELE is sent;
/// - when the session fails, what was received whole is committed before the failure is
///   reported (it is not fetched again, and the next poll deletes it);
/// - QUIT follows the last DELE's answer, and messages are marked deleted only after QUIT;
/// - a message the catalog left out of its batch's commit as a copy of one recorded before
///   (see ``TransferStore/commitReceived(_:)``) is not deleted, and is retrieved once more in
///   the same session, for the driver to record as what it is (a DUPLICATE).
///
/// RETRs are pipelined when the server offers PIPELINING: up to `window` unanswered, refilled
/// when half are answered, written in bursts (one write for several commands). Full batches
/// are committed in the background (up to `commitsInFlight`) while the next one is received.
struct PollStateMachine<Message: PollStagedMessage> {
    struct Settings: Sendable {
        var deleteAfterRetrieve: Bool
        /// Messages per batch at most.
        var commitBatch: Int
        /// Bytes per batch at most.
        var batchBytes: Int64
        /// Unanswered RETRs at most; 1 without pipelining (every command then waits for its answer).
        var window: Int
        /// Batches being committed while the next is received.
        var commitsInFlight: Int
    }

    enum Action {
        /// Write these commands in one burst (pipelining only), then report ``sent()``.
        case send([POP3Command])
        /// Receive this message (with pipelining, the answer to a RETR already sent; without,
        /// send RETR first) and stage it: report ``messageStaged(_:)`` or ``failed(_:)``.
        /// `recordedBefore`: the catalog left it out of a commit, its Message-ID recorded before.
        case receive(POP3ListingEntry, pipelined: Bool, recordedBefore: Bool)
        /// The answer to this DELE (without pipelining, send it first): report
        /// ``deleteAnswered(_:)`` or ``failed(_:)``.
        case awaitDelete(POP3ListingEntry, pipelined: Bool)
        /// Start committing this batch in the background, after batch `after` (nil: none
        /// before it), then report ``commitStarted()``.
        case commit(batch: Int, [Message], after: Int?)
        /// Wait for this batch's commit: report ``batchCommitted(_:)`` or ``batchFailed(_:)``.
        case awaitCommit(batch: Int)
        /// Send QUIT: report ``quitAnswered()`` or ``failed(_:)``.
        case quit
        /// The server confirmed these deletions (QUIT succeeded): record them, then report
        /// ``markedDeleted()``.
        case markDeleted(uidls: [String])
        /// The poll is done.
        case finish
        /// The poll failed with this error; everything received before it has been committed
        /// or has failed to commit.
        case fail(any Error)
    }

    private enum Expected {
        case retrieve(POP3ListingEntry)
        case delete(POP3ListingEntry)
    }

    /// Work still to do, in order; each step may emit an action and wait for its event.
    private enum Step {
        /// Fill the RETR window, write what is unsent, then take the next expected answer.
        case loopTop
        case takeNextAnswer
        /// Wait for the oldest commit while as many as allowed are in flight.
        case makeRoomForCommit
        case commitStaged
        /// Wait for every commit in flight.
        case awaitAllCommits
        case quit
        case fail
    }

    private enum Waiting: Equatable {
        case nothing
        case sent
        case message(Int)
        case delete(Int)
        case commitStarted
        case commit(Int)
        case quit
        case markedDeleted
        case done
    }

    let settings: Settings
    private var toRetrieve: [POP3ListingEntry]
    private var nextToSend = 0
    private var retrievesInFlight = 0
    private var expected: [Expected] = []
    private var head = 0
    private var unsent: [POP3Command] = []
    private var staged: [Message] = []
    private var stagedBytes: Int64 = 0
    private var committing: [(batch: Int, messages: [Message])] = []
    private var batchesStarted = 0
    private var deletions: [String] = []
    /// Messages (by number) a commit left out, retrieved again.
    private var retaken: Set<Int> = []
    private var steps: [Step] = []
    private var waiting: Waiting = .nothing
    /// Set once the session or a commit failed: only draining is left.
    private var failure: (any Error)?

    /// `toDelete`: messages committed by an earlier poll but not deleted; `toRetrieve`: the rest.
    init(settings: Settings, toDelete: [POP3ListingEntry], toRetrieve: [POP3ListingEntry]) {
        self.settings = settings
        self.toRetrieve = toRetrieve
        for entry in toDelete {
            expect(.dele(entry.number), .delete(entry))
        }
    }

    var isPipelined: Bool { settings.window > 1 }

    /// The batches received but perhaps not yet in the catalog (being committed, being
    /// received): a duplicate check must see them.
    var unsettledBatches: [[Message]] {
        committing.map(\.messages) + [staged]
    }

    // MARK: Events

    mutating func start() -> Action {
        precondition(waiting == .nothing, "start() twice")
        steps = [.loopTop]
        return advance()
    }

    mutating func sent() -> Action {
        expectWaiting(.sent)
        return advance()
    }

    mutating func commitStarted() -> Action {
        expectWaiting(.commitStarted)
        return advance()
    }

    mutating func messageStaged(_ message: Message) -> Action {
        expectWaiting(.message(message.entry.number))
        staged.append(message)
        stagedBytes += message.wireSize
        return messageDone()
    }

    /// The message could not be retrieved (the server refused it, or it proved larger than
    /// allowed) but the session is still in step: the poll goes on without it, and it stays on
    /// the server for the next poll.
    mutating func messageSkipped(_ entry: POP3ListingEntry) -> Action {
        expectWaiting(.message(entry.number))
        return messageDone()
    }

    private mutating func messageDone() -> Action {
        let nothingElseComing = retrievesInFlight == 0 && nextToSend == toRetrieve.count
        var next: [Step] = []
        let batchFull = staged.count >= settings.commitBatch || stagedBytes >= settings.batchBytes
        if !staged.isEmpty, batchFull || nothingElseComing || !isPipelined {
            next += [.makeRoomForCommit, .commitStaged]
        }
        // Without pipelining each DELE follows its commit at once; at the end, the last
        // batch's DELEs must go out before QUIT.
        if nothingElseComing || !isPipelined {
            next.append(.awaitAllCommits)
        }
        next.append(.loopTop)
        steps.insert(contentsOf: next, at: 0)
        return advance()
    }

    mutating func deleteAnswered(_ entry: POP3ListingEntry) -> Action {
        expectWaiting(.delete(entry.number))
        deletions.append(entry.value)
        steps.insert(.loopTop, at: 0)
        return advance()
    }

    /// The batch is committed, but for `leftOut`: messages the catalog did not record because
    /// their Message-ID was recorded before. Those stay on the server and, the first time, are
    /// retrieved again (a second time, they stay for the next poll).
    mutating func batchCommitted(_ batch: Int, leftOut: Set<Int> = []) -> Action {
        expectWaiting(.commit(batch))
        let (_, messages) = committing.removeFirst()
        // After a failure nothing more is sent: the batch is recorded, its messages are
        // deleted by the next poll.
        guard failure == nil else { return advance() }
        for message in messages {
            if leftOut.contains(message.entry.number) {
                if retaken.insert(message.entry.number).inserted { toRetrieve.append(message.entry) }
            } else if settings.deleteAfterRetrieve {
                expect(.dele(message.entry.number), .delete(message.entry))
            }
        }
        return advance()
    }

    mutating func batchFailed(_ batch: Int, _ error: any Error) -> Action {
        expectWaiting(.commit(batch))
        committing.removeFirst()
        // Later batches wait for this one and so fail too; nothing more goes to the server.
        return failed(error, waitingFor: .commit(batch))
    }

    mutating func quitAnswered() -> Action {
        expectWaiting(.quit)
        waiting = .markedDeleted
        return .markDeleted(uidls: deletions)
    }

    mutating func markedDeleted() -> Action {
        expectWaiting(.markedDeleted)
        waiting = .done
        return .finish
    }

    /// The session failed (a command, a read, QUIT, marking the deletions).
    mutating func failed(_ error: any Error) -> Action {
        failed(error, waitingFor: waiting)
    }

    private mutating func failed(_ error: any Error, waitingFor: Waiting) -> Action {
        precondition(waiting == waitingFor && waiting != .done && waiting != .nothing, "failed() while not waiting for the session")
        if failure != nil {
            // A commit failed while draining: the driver has reported it; go on draining.
            return advance()
        }
        failure = error
        // What was received whole is committed before the poll gives up.
        steps = [.awaitAllCommits, .commitStaged, .awaitAllCommits, .fail]
        return advance()
    }

    // MARK: Steps

    private mutating func advance() -> Action {
        while !steps.isEmpty {
            let step = steps.removeFirst()
            switch step {
            case .loopTop:
                if retrievesInFlight <= settings.window / 2 {
                    while retrievesInFlight < settings.window, nextToSend < toRetrieve.count {
                        let entry = toRetrieve[nextToSend]
                        expect(.retr(entry.number), .retrieve(entry))
                        nextToSend += 1
                        retrievesInFlight += 1
                    }
                }
                steps.insert(.takeNextAnswer, at: 0)
                if !unsent.isEmpty {
                    let commands = unsent
                    unsent = []
                    waiting = .sent
                    return .send(commands)
                }
            case .takeNextAnswer:
                guard head < expected.count else {
                    steps.insert(.quit, at: 0)
                    continue
                }
                let next = expected[head]
                head += 1
                switch next {
                case .delete(let entry):
                    waiting = .delete(entry.number)
                    return .awaitDelete(entry, pipelined: isPipelined)
                case .retrieve(let entry):
                    retrievesInFlight -= 1
                    waiting = .message(entry.number)
                    return .receive(entry, pipelined: isPipelined, recordedBefore: retaken.contains(entry.number))
                }
            case .makeRoomForCommit:
                if committing.count >= settings.commitsInFlight, let oldest = committing.first {
                    steps.insert(.makeRoomForCommit, at: 0)
                    waiting = .commit(oldest.batch)
                    return .awaitCommit(batch: oldest.batch)
                }
            case .commitStaged:
                guard !staged.isEmpty else { continue }
                let batch = batchesStarted
                batchesStarted += 1
                let messages = staged
                staged = []
                stagedBytes = 0
                // Files are made durable in parallel with the batch before, but the catalog
                // commits in order: a record (a DUPLICATE naming an earlier transfer, a
                // report) must never be committed without the batches before it.
                let after = batch > 0 ? batch - 1 : nil
                committing.append((batch, messages))
                waiting = .commitStarted
                return .commit(batch: batch, messages, after: after)
            case .awaitAllCommits:
                if let oldest = committing.first {
                    steps.insert(.awaitAllCommits, at: 0)
                    waiting = .commit(oldest.batch)
                    return .awaitCommit(batch: oldest.batch)
                }
            case .quit:
                waiting = .quit
                return .quit
            case .fail:
                waiting = .done
                // `.fail` is only ever queued after a failure was recorded.
                return .fail(failure ?? PollStateMachineError.failedWithoutCause)
            }
        }
        preconditionFailure("the poll state machine ran out of steps")
    }

    private mutating func expect(_ command: POP3Command, _ answer: Expected) {
        if isPipelined { unsent.append(command) }
        expected.append(answer)
    }

    private func expectWaiting(_ event: Waiting) {
        precondition(waiting == event, "poll state machine: \(event) reported while waiting for \(waiting)")
    }
}

enum PollStateMachineError: Error, CustomStringConvertible {
    case failedWithoutCause

    var description: String { "the poll failed without a recorded cause (a bug in the poll)" }
}
