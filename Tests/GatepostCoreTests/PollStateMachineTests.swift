@testable import GatepostCore
import GatepostPOP3
import GatepostTestSupport
import Testing

/// The poll's order of work without a socket, a disk or a database: events in, actions out,
/// and the guarantees checked after every step.
@Suite struct PollStateMachineTests {
    struct Message: PollStagedMessage {
        var entry: POP3ListingEntry
        var wireSize: Int64
    }

    struct Failure: Error, Equatable {
        var what: String
    }

    typealias Machine = PollStateMachine<Message>

    static func entries(_ count: Int, from first: Int = 1) -> [POP3ListingEntry] {
        (first..<first + count).map { POP3ListingEntry(number: $0, value: "uid-\($0)") }
    }

    static func settings(window: Int = 16, batch: Int = 4, inFlight: Int = 2, delete: Bool = true) -> Machine.Settings {
        .init(deleteAfterRetrieve: delete, commitBatch: batch, batchBytes: 8 << 20, window: window, commitsInFlight: inFlight)
    }

    /// Plays the server, the spool and the catalog, records what the machine did, and checks
    /// the invariants after every action.
    struct World {
        var machine: Machine
        /// Which event to answer each action with; nil: success.
        var failReceive: (POP3ListingEntry) -> Bool = { _ in false }
        /// Messages the server refuses alone (the session stays in step): skipped.
        var skipReceive: (POP3ListingEntry) -> Bool = { _ in false }
        var skipped: [Int] = []
        var failCommit: (Int) -> Bool = { _ in false }
        /// Messages the catalog leaves out of their batch's commit (their Message-ID recorded
        /// before), given whether this is their second retrieval.
        var leaveOut: (_ number: Int, _ retaken: Bool) -> Bool = { _, _ in false }
        var failDelete: (POP3ListingEntry) -> Bool = { _ in false }
        var failQuit = false

        // What happened, in order.
        var sentCommands: [POP3Command] = []
        var received: [Int] = []
        /// Messages received a second time, announced as recorded before.
        var retaken: [Int] = []
        /// Messages the catalog recorded (in a committed batch, not left out).
        var recorded: Set<Int> = []
        var leftOut: [Int] = []
        var batches: [Int: [Int]] = [:]
        var committed: [Int] = []
        var failedBatches: [Int] = []
        var deleAnswered: [Int] = []
        var quitSent = false
        var markedDeleted: [String]?
        var outcome: Result<Void, Failure>?
        var log: [String] = []

        init(_ machine: Machine) {
            self.machine = machine
        }

        /// Messages whose batch committed (recorded, or left out).
        var committedMessages: Set<Int> {
            Set(committed.flatMap { batches[$0] ?? [] })
        }

        mutating func run(limit: Int = 100_000) {
            var action = machine.start()
            for _ in 0..<limit {
                check(action)
                switch action {
                case .send(let commands):
                    log.append("send \(commands.map(\.logDescription))")
                    sentCommands += commands
                    action = machine.sent()
                case .receive(let entry, let pipelined, let recordedBefore):
                    log.append("receive \(entry.number)\(recordedBefore ? " again" : "")")
                    if !pipelined { sentCommands.append(.retr(entry.number)) }
                    // Announced as recorded before exactly when it was left out, once.
                    #expect(recordedBefore == leftOut.contains(entry.number), "\(log.suffix(10))")
                    #expect(!retaken.contains(entry.number), "message \(entry.number) retrieved a third time")
                    if recordedBefore { retaken.append(entry.number) }
                    if failReceive(entry) {
                        action = machine.failed(Failure(what: "RETR \(entry.number)"))
                    } else if skipReceive(entry) {
                        skipped.append(entry.number)
                        action = machine.messageSkipped(entry)
                    } else {
                        received.append(entry.number)
                        action = machine.messageStaged(Message(entry: entry, wireSize: 1000))
                    }
                case .awaitDelete(let entry, let pipelined):
                    log.append("dele \(entry.number)")
                    if !pipelined { sentCommands.append(.dele(entry.number)) }
                    if failDelete(entry) {
                        action = machine.failed(Failure(what: "DELE \(entry.number)"))
                    } else {
                        deleAnswered.append(entry.number)
                        action = machine.deleteAnswered(entry)
                    }
                case .commit(let batch, let messages, let after):
                    log.append("commit \(batch) \(messages.map(\.entry.number)) after \(String(describing: after))")
                    batches[batch] = messages.map(\.entry.number)
                    action = machine.commitStarted()
                case .awaitCommit(let batch):
                    log.append("await \(batch)")
                    // A commit waits for the one before it: it fails if that one failed.
                    if failCommit(batch) || failedBatches.contains(batch - 1) {
                        failedBatches.append(batch)
                        action = machine.batchFailed(batch, Failure(what: "commit \(batch)"))
                    } else {
                        committed.append(batch)
                        var left: Set<Int> = []
                        for number in batches[batch] ?? [] {
                            if leaveOut(number, retaken.contains(number)) {
                                left.insert(number)
                                leftOut.append(number)
                            } else {
                                recorded.insert(number)
                            }
                        }
                        action = machine.batchCommitted(batch, leftOut: left)
                    }
                case .quit:
                    log.append("quit")
                    quitSent = true
                    action = failQuit ? machine.failed(Failure(what: "QUIT")) : machine.quitAnswered()
                case .markDeleted(let uidls):
                    markedDeleted = uidls
                    action = machine.markedDeleted()
                case .finish:
                    outcome = .success(())
                    return
                case .fail(let error):
                    outcome = .failure(error as? Failure ?? Failure(what: "\(error)"))
                    return
                }
            }
            Issue.record("the machine did not finish within \(limit) actions: \(log.suffix(20))")
        }

        /// The guarantees, checked before each action is performed.
        func check(_ action: Machine.Action) {
            switch action {
            case .send(let commands):
                for case .dele(let number) in commands {
                    #expect(recorded.contains(number) || number >= 1000, "DELE \(number) before it was recorded: \(log.suffix(10))")
                }
                #expect(!quitSent)
            case .awaitDelete(let entry, let pipelined):
                if !pipelined {
                    #expect(recorded.contains(entry.number) || entry.number >= 1000, "DELE \(entry.number) before it was recorded")
                }
            case .commit(let batch, _, let after):
                // In order: each batch after the one started just before it.
                #expect(after == (batch == 0 ? nil : batch - 1))
                #expect(batches[batch] == nil, "batch \(batch) started twice")
            case .quit:
                // Every DELE sent has been answered.
                let deles = sentCommands.filter { if case .dele = $0 { true } else { false } }.count
                #expect(deles == deleAnswered.count, "QUIT with DELEs unanswered")
            case .markDeleted(let uidls):
                #expect(quitSent)
                #expect(Set(uidls) == Set(deleAnswered.map { $0 >= 1000 ? "old-\($0)" : "uid-\($0)" }))
            default:
                break
            }
            // A skipped message is never deleted, never committed.
            for case .dele(let number) in sentCommands {
                #expect(!skipped.contains(number), "DELE \(number) of a skipped message")
            }
            // No DELE for any message of a batch after a failed one.
            if let firstFailed = failedBatches.min() {
                let blocked = Set(batches.filter { $0.key >= firstFailed }.flatMap(\.value))
                for case .dele(let number) in sentCommands {
                    #expect(!blocked.contains(number), "DELE \(number) of a batch at or after failed batch \(firstFailed)")
                }
            }
        }
    }

    @Test(arguments: [1, 16])
    func everyMessageIsCommittedThenDeletedThenQuit(window: Int) {
        var world = World(Machine(settings: Self.settings(window: window), toDelete: [], toRetrieve: Self.entries(10)))
        world.run()
        #expect(world.outcome.map { (try? $0.get()) != nil } == true)
        #expect(world.received == Array(1...10))
        #expect(world.committedMessages == Set(1...10))
        #expect(world.deleAnswered.sorted() == Array(1...10))
        #expect(world.markedDeleted?.count == 10)
    }

    @Test func pipelinedRETRsAreWrittenInBurstsAndRefilledAtHalfTheWindow() {
        var world = World(Machine(settings: Self.settings(window: 16, batch: 32), toDelete: [], toRetrieve: Self.entries(40)))
        world.run()
        let sends = world.log.filter { $0.hasPrefix("send") }
        // 16 at first, then 8 each time half the window is answered, then the DELEs.
        #expect(sends.first?.components(separatedBy: "RETR").count == 17)
        #expect(world.received == Array(1...40))
    }

    @Test func withoutDeleteAfterRetrieveNothingIsDeleted() {
        var world = World(Machine(settings: Self.settings(delete: false), toDelete: [], toRetrieve: Self.entries(6)))
        world.run()
        #expect(world.deleAnswered.isEmpty)
        #expect(world.markedDeleted == [])
        #expect(world.committedMessages == Set(1...6))
    }

    @Test func leftoversFromAnEarlierPollAreDeletedFirst() {
        let leftovers = [POP3ListingEntry(number: 1000, value: "old-1000")]
        var world = World(Machine(settings: Self.settings(), toDelete: leftovers, toRetrieve: Self.entries(3)))
        world.run()
        #expect(world.deleAnswered.first == 1000)
        #expect(world.markedDeleted?.contains("old-1000") == true)
    }

    @Test(arguments: [1, 16])
    func whatArrivedWholeIsCommittedWhenTheSessionFails(window: Int) {
        var world = World(Machine(settings: Self.settings(window: window, batch: 4), toDelete: [], toRetrieve: Self.entries(10)))
        world.failReceive = { $0.number == 7 }
        world.run()
        #expect(world.outcome.map { (try? $0.get()) == nil } == true)
        // 1...6 arrived whole: all committed, none lost.
        #expect(world.committedMessages == Set(1...6))
        #expect(!world.quitSent)
        #expect(world.markedDeleted == nil)
    }

    @Test func aFailedBatchBlocksItsSuccessorsAndStopsTheDELEs() {
        var world = World(Machine(settings: Self.settings(window: 16, batch: 2, inFlight: 2), toDelete: [], toRetrieve: Self.entries(12)))
        world.failCommit = { $0 == 1 }
        world.run()
        #expect(world.outcome.map { (try? $0.get()) == nil } == true)
        #expect(world.committed.allSatisfy { $0 < 1 })
        #expect(!world.quitSent)
    }

    @Test(arguments: [1, 16])
    func aSkippedMessageStaysWhileTheOthersAreCommittedAndDeleted(window: Int) {
        var world = World(Machine(settings: Self.settings(window: window, batch: 3), toDelete: [], toRetrieve: Self.entries(7)))
        world.skipReceive = { $0.number == 3 || $0.number == 7 }
        world.run()
        #expect(world.outcome.map { (try? $0.get()) != nil } == true)
        #expect(world.skipped == [3, 7])
        #expect(world.committedMessages == [1, 2, 4, 5, 6])
        #expect(world.deleAnswered.sorted() == [1, 2, 4, 5, 6])
        #expect(world.quitSent)
    }

    /// A message another poll recorded (the catalog leaves it out of the commit): not deleted,
    /// retrieved again in the same session to be recorded as what it now is; left on the server
    /// if the catalog leaves it out again.
    @Test(arguments: [1, 16], [true, false])
    func aMessageRecordedBeforeIsKeptAndRetrievedAgainOnce(window: Int, againLeftOut: Bool) {
        var world = World(Machine(settings: Self.settings(window: window, batch: 2), toDelete: [], toRetrieve: Self.entries(5)))
        world.leaveOut = { number, retaken in number == 2 && (!retaken || againLeftOut) }
        world.run()
        #expect(world.outcome.map { (try? $0.get()) != nil } == true)
        #expect(world.received == [1, 2, 3, 4, 5, 2])
        #expect(world.retaken == [2])
        #expect(world.deleAnswered.sorted() == (againLeftOut ? [1, 3, 4, 5] : [1, 2, 3, 4, 5]))
        #expect(world.log.contains("receive 2 again"))
    }

    @Test func aMessageLeftOutAfterTheSessionFailedIsNotRetrievedAgain() {
        var world = World(Machine(settings: Self.settings(window: 16, batch: 2), toDelete: [], toRetrieve: Self.entries(5)))
        world.leaveOut = { number, _ in number == 1 }
        world.failReceive = { $0.number == 4 }
        world.run()
        #expect(world.outcome.map { (try? $0.get()) == nil } == true)
        #expect(world.retaken.isEmpty)
        #expect(!world.deleAnswered.contains(1))
    }

    @Test func aFailedQUITMarksNothingDeleted() {
        var world = World(Machine(settings: Self.settings(), toDelete: [], toRetrieve: Self.entries(3)))
        world.failQuit = true
        world.run()
        #expect(world.outcome.map { (try? $0.get()) == nil } == true)
        #expect(world.markedDeleted == nil)
        #expect(world.committedMessages == Set(1...3))
    }

    /// Arbitrary interleavings: listings, windows, batch sizes and failures drawn from a seeded
    /// generator; the invariants are checked after every step (in `World.check`), and every
    /// run ends with each received message committed or its batch failed, never both.
    @Test func randomInterleavingsKeepTheGuarantees() {
        var generator = SplitMix64(state: 0x6A7E_9057)
        for round in 0..<500 {
            let count = Int.random(in: 0...60, using: &generator)
            let window = Bool.random(using: &generator) ? 1 : Int.random(in: 2...20, using: &generator)
            let batch = Int.random(in: 1...10, using: &generator)
            let inFlight = Int.random(in: 1...3, using: &generator)
            let leftovers = (0..<Int.random(in: 0...3, using: &generator)).map { POP3ListingEntry(number: 1000 + $0, value: "old-\(1000 + $0)") }
            var world = World(Machine(
                settings: Self.settings(window: window, batch: batch, inFlight: inFlight, delete: Bool.random(using: &generator)),
                toDelete: leftovers, toRetrieve: Self.entries(count)
            ))
            let failAt = Int.random(in: 0...3, using: &generator) == 0 ? Int.random(in: 1...max(1, count), using: &generator) : nil
            let failBatch = Int.random(in: 0...3, using: &generator) == 0 ? Int.random(in: 0...8, using: &generator) : nil
            let failDele = Int.random(in: 0...5, using: &generator) == 0 ? Int.random(in: 1...max(1, count), using: &generator) : nil
            world.failReceive = { $0.number == failAt }
            world.failCommit = { $0 == failBatch }
            world.failDelete = { $0.number == failDele }
            world.failQuit = Int.random(in: 0...9, using: &generator) == 0
            let skipEvery = Int.random(in: 0...2, using: &generator) == 0 ? Int.random(in: 2...7, using: &generator) : nil
            world.skipReceive = { entry in skipEvery.map { entry.number % $0 == 0 } ?? false }
            let leaveOutEvery = Int.random(in: 0...2, using: &generator) == 0 ? Int.random(in: 2...5, using: &generator) : nil
            let leaveOutAgain = Bool.random(using: &generator)
            world.leaveOut = { number, retaken in (leaveOutEvery.map { number % $0 == 0 } ?? false) && (!retaken || leaveOutAgain) }
            world.run()
            #expect(world.outcome != nil, "round \(round) did not end")
            #expect(Set(world.skipped).isDisjoint(with: world.committedMessages), "round \(round): a skipped message committed")
            let staged = Set(world.received)
            let inBatches = Set(world.batches.values.flatMap { $0 })
            // Everything received went into a batch that was committed or failed.
            #expect(staged == inBatches, "round \(round): received but never committed: \(staged.subtracting(inBatches))")
            for (batch, _) in world.batches {
                #expect(world.committed.contains(batch) != world.failedBatches.contains(batch), "round \(round): batch \(batch) not settled")
            }
            if case .success = world.outcome {
                #expect(staged.union(world.skipped) == Set(1..<(count + 1)), "round \(round): success without every message")
                // A message left out is retrieved again, and left on the server only when the
                // catalog leaves it out a second time.
                let leftTwice = Set(world.leftOut.filter { number in world.leftOut.filter { $0 == number }.count == 2 })
                #expect(Set(world.leftOut) == Set(world.retaken).union(leftTwice), "round \(round)")
                #expect(world.recorded.union(world.skipped).union(leftTwice) == Set(1..<(count + 1)), "round \(round)")
            }
            #expect(world.recorded.isDisjoint(with: world.leftOut.filter { number in !world.retaken.contains(number) }), "round \(round)")
        }
    }
}
