import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// An in-process POP3 server on 127.0.0.1 that serves a fixed mailbox and can misbehave on
/// purpose. It is for the demo and for fault injection (resets, silence, odd answers) on top of
/// the tests against real Dovecot, never instead of them.
public final class ScriptedPOP3Server: Sendable {
    public struct Message: Sendable, Hashable {
        public var uidl: String
        /// The message as RETR sends it (CRLF line endings), before dot-stuffing.
        public var bytes: [UInt8] {
            didSet { stuffed = Self.stuffed(bytes) }
        }
        /// RETR's data, dot-stuffed and terminated, made once here: the server's event loop
        /// is shared by every connection of the test process, and stuffing a large message
        /// byte by byte there (in a debug build) held up every other test's I/O for seconds.
        fileprivate private(set) var stuffed: ByteBuffer

        public init(uidl: String, bytes: [UInt8]) {
            self.uidl = uidl
            self.bytes = bytes
            stuffed = Self.stuffed(bytes)
        }

        static func stuffed(_ bytes: [UInt8]) -> ByteBuffer {
            var out = ByteBuffer()
            out.reserveCapacity(bytes.count + bytes.count / 64 + 8)
            ScriptedPOP3Handler.writeStuffed(bytes, into: &out)
            out.writeStaticString(".\r\n")
            return out
        }
    }

    /// Ways to deviate from a well-behaved server.
    public struct Behavior: Sendable {
        /// CAPA lines; nil makes CAPA fail (a server from before RFC 2449).
        public var capabilities: [String]? = ["USER", "UIDL", "TOP", "SASL PLAIN", "PIPELINING"]
        /// An answer to send instead of the normal one, by command line (e.g. "RETR 2").
        public var override: @Sendable (String) -> String? = { _ in nil }
        /// Close the connection after sending this many bytes of a RETR's data.
        public var resetDuringRetrAfterBytes: Int?
        /// Stop answering (but keep the connection open) once this command arrives.
        public var silentFrom: String?
        /// The greeting; nil sends none (a server that accepts and then hangs).
        public var greeting: String? = "+OK Gatepost scripted POP3 server ready <1.2@gatepost.test>"
        /// Answer this command with a line that never ends (bytes without CRLF, then silence).
        public var endlessLineOn: String?
        /// What LIST reports for a message, instead of its real size.
        public var listedSize: @Sendable (Int) -> Int? = { _ in nil }
        /// Whether UIDL works (a server from before RFC 1939's optional commands says -ERR).
        public var supportsUIDL = true
        /// The bearer token XOAUTH2 and OAUTHBEARER accept (nil: those mechanisms fail).
        public var bearerToken: String?
        /// Bytes to send after the answer to a command line, in a write of their own, when the
        /// test calls ``ScriptedPOP3Server/sendInjections()`` (a man in the middle injecting
        /// plaintext after `+OK` to STLS, at the moment the test chooses).
        public var injectAfter: @Sendable (String) -> String? = { _ in nil }
        /// A line sent after `+OK` to QUIT (a server that says goodbye twice).
        public var strayAfterQUIT: String?

        public init() {}
    }

    private struct Mailbox {
        var messages: [Message]
        var sessions = 0
    }

    public let user: String
    public let password: String
    private let behavior: Behavior
    private let mailbox: NIOLockedValueBox<Mailbox>
    private let listener = LoopbackListener()
    private let injections = NIOLockedValueBox<[(channel: any Channel, bytes: String)]>([])

    public init(messages: [Message], user: String = "demo", password: String = "demo-password", behavior: Behavior = Behavior()) {
        self.user = user
        self.password = password
        self.behavior = behavior
        mailbox = NIOLockedValueBox(Mailbox(messages: messages))
    }

    /// What is still on the server (what QUIT did not delete).
    public var messages: [Message] { mailbox.withLockedValue { $0.messages } }

    /// Starts listening on a free port of 127.0.0.1 and returns it.
    public func start(group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws -> Int {
        try await listener.start(group: group) { [self] channel in
            try channel.pipeline.syncOperations.addHandler(ScriptedPOP3Handler(server: self))
        }
    }

    public func stop() async {
        await listener.stop()
    }

    /// Sends the injections (``Behavior/injectAfter``) that are due, and returns their bytes.
    @discardableResult
    public func sendInjections() -> Int {
        let due = injections.withLockedValue { due in
            defer { due = [] }
            return due
        }
        for (channel, bytes) in due {
            channel.writeAndFlush(ByteBuffer(string: bytes), promise: nil)
        }
        return due.reduce(0) { $0 + $1.bytes.utf8.count }
    }

    fileprivate func holdInjection(_ bytes: String, for channel: any Channel) {
        injections.withLockedValue { $0.append((channel, bytes)) }
    }

    // MARK: - Session logic, called by the handler on its event loop

    fileprivate var currentBehavior: Behavior { behavior }

    fileprivate func snapshot() -> [Message] {
        mailbox.withLockedValue { $0.messages }
    }

    /// Removes the messages a session deleted, each once: two messages may share a UIDL.
    fileprivate func commitDeletions(_ deleted: [Message]) {
        mailbox.withLockedValue { mailbox in
            for message in deleted {
                if let index = mailbox.messages.firstIndex(of: message) { mailbox.messages.remove(at: index) }
            }
        }
    }
}

private final class ScriptedPOP3Handler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let server: ScriptedPOP3Server
    private var pending = ByteBuffer()
    private var snapshot: [ScriptedPOP3Server.Message] = []
    private var deleted = Set<Int>()
    private var authenticated = false
    private var userGiven: String?
    private var silent = false
    private var pendingBearerFailure = false

    init(server: ScriptedPOP3Server) {
        self.server = server
    }

    func channelActive(context: ChannelHandlerContext) {
        if let greeting = server.currentBehavior.greeting {
            send(greeting, context: context)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        pending.writeBuffer(&buffer)
        while let lf = pending.readableBytesView.firstIndex(of: 0x0A) {
            let length = lf - pending.readableBytesView.startIndex + 1
            guard let bytes = pending.readBytes(length: length) else { break }
            let line = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: ["\r", "\n"])
            handle(line, context: context)
        }
        pending.discardReadBytes()
    }

    private func send(_ line: String, context: ChannelHandlerContext) {
        var out = context.channel.allocator.buffer(capacity: line.utf8.count + 2)
        out.writeString(line)
        out.writeStaticString("\r\n")
        context.writeAndFlush(wrapOutboundOut(out), promise: nil)
    }

    private func handle(_ line: String, context: ChannelHandlerContext) {
        guard !silent else { return }
        let behavior = server.currentBehavior
        if let silentFrom = behavior.silentFrom, line.uppercased().hasPrefix(silentFrom.uppercased()) {
            silent = true
            return
        }
        if let answer = behavior.override(line) {
            send(answer, context: context)
            if let injected = behavior.injectAfter(line) {
                server.holdInjection(injected, for: context.channel)
            }
            return
        }
        if let endless = behavior.endlessLineOn, line.uppercased().hasPrefix(endless.uppercased()) {
            silent = true
            var out = context.channel.allocator.buffer(capacity: 256 * 1024)
            out.writeString("+OK " + String(repeating: "x", count: 256 * 1024))
            context.writeAndFlush(wrapOutboundOut(out), promise: nil)
            return
        }
        let words = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        let verb = words.first?.uppercased() ?? ""
        let argument = words.dropFirst().first.flatMap { Int($0) }

        func message(_ number: Int?) -> ScriptedPOP3Server.Message? {
            guard let number, number >= 1, number <= snapshot.count, !deleted.contains(number) else { return nil }
            return snapshot[number - 1]
        }

        switch verb {
        case "CAPA":
            guard let capabilities = behavior.capabilities else { return send("-ERR unknown command", context: context) }
            send("+OK capabilities follow", context: context)
            capabilities.forEach { send($0, context: context) }
            send(".", context: context)
        case "USER":
            userGiven = words.count > 1 ? words[1] : nil
            send("+OK", context: context)
        case "PASS":
            let password = line.count > 5 ? String(line.dropFirst(5)) : ""
            if userGiven == server.user, password == server.password {
                login(context: context)
            } else {
                send("-ERR [AUTH] invalid user name or password", context: context)
            }
        case "AUTH" where words.count == 3 && ["XOAUTH2", "OAUTHBEARER"].contains(words[1].uppercased()):
            let decoded = Data(base64Encoded: words[2]).map { String(decoding: $0, as: UTF8.self) } ?? ""
            if let token = behavior.bearerToken, decoded.contains("auth=Bearer \(token)\u{1}"), decoded.contains(server.user) {
                login(context: context)
            } else {
                // RFC 7628: an error challenge, answered by the client with ^A, then -ERR.
                pendingBearerFailure = true
                send("+ " + Data(#"{"status":"invalid_token"}"#.utf8).base64EncodedString(), context: context)
            }
        case _ where pendingBearerFailure:
            pendingBearerFailure = false
            send("-ERR [AUTH] invalid token", context: context)
        case "AUTH" where words.count == 3 && words[1].uppercased() == "PLAIN":
            let expected = DemoMailbox.base64("\0\(server.user)\0\(server.password)")
            if words[2] == expected { login(context: context) } else { send("-ERR [AUTH] authentication failed", context: context) }
        case "STAT" where authenticated:
            let live = snapshot.indices.filter { !deleted.contains($0 + 1) }
            send("+OK \(live.count) \(live.reduce(0) { $0 + snapshot[$1].bytes.count })", context: context)
        case "UIDL" where authenticated && !behavior.supportsUIDL:
            send("-ERR command not recognized", context: context)
        case "TOP" where authenticated:
            guard let found = message(argument), words.count == 3, let lines = Int(words[2]), lines >= 0 else {
                return send("-ERR no such message", context: context)
            }
            send("+OK top of message follows", context: context)
            var out = context.channel.allocator.buffer(capacity: 4096)
            Self.writeStuffed(Self.top(found.bytes, lines: lines), into: &out)
            out.writeStaticString(".\r\n")
            context.writeAndFlush(wrapOutboundOut(out), promise: nil)
        case "LIST" where authenticated, "UIDL" where authenticated:
            if words.count > 1 {
                guard let found = message(argument), let number = argument else { return send("-ERR no such message", context: context) }
                send("+OK \(number) \(verb == "LIST" ? String(behavior.listedSize(number) ?? found.bytes.count) : found.uidl)", context: context)
                return
            }
            send("+OK", context: context)
            for (offset, item) in snapshot.enumerated() where !deleted.contains(offset + 1) {
                send("\(offset + 1) \(verb == "LIST" ? String(behavior.listedSize(offset + 1) ?? item.bytes.count) : item.uidl)", context: context)
            }
            send(".", context: context)
        case "RETR" where authenticated:
            guard let found = message(argument) else { return send("-ERR no such message", context: context) }
            send("+OK \(found.bytes.count) octets", context: context)
            let out = found.stuffed
            if let limit = behavior.resetDuringRetrAfterBytes {
                let slice = out.getSlice(at: out.readerIndex, length: min(limit, out.readableBytes)) ?? out
                context.writeAndFlush(wrapOutboundOut(slice), promise: nil)
                context.close(promise: nil)
                return
            }
            context.writeAndFlush(wrapOutboundOut(out), promise: nil)
        case "DELE" where authenticated:
            guard message(argument) != nil, let number = argument else { return send("-ERR no such message", context: context) }
            deleted.insert(number)
            send("+OK deleted", context: context)
        case "RSET" where authenticated:
            deleted.removeAll()
            send("+OK", context: context)
        case "NOOP" where authenticated:
            send("+OK", context: context)
        case "QUIT":
            if authenticated {
                server.commitDeletions(deleted.sorted().map { snapshot[$0 - 1] })
            }
            send("+OK bye", context: context)
            if let stray = behavior.strayAfterQUIT { send(stray, context: context) }
            context.close(promise: nil)
        default:
            send("-ERR command not recognized or not allowed now", context: context)
        }
    }

    private func login(context: ChannelHandlerContext) {
        authenticated = true
        snapshot = server.snapshot()
        send("+OK logged in", context: context)
    }

    /// The header and the first `lines` lines of the body, as TOP sends them.
    static func top(_ bytes: [UInt8], lines: Int) -> [UInt8] {
        var out: [UInt8] = []
        var lineStart = 0
        var inBody = false
        var bodyLines = 0
        for (index, byte) in bytes.enumerated() where byte == 0x0A {
            let line = bytes[lineStart...index]
            if inBody {
                if bodyLines == lines { break }
                bodyLines += 1
            } else if line.count <= 2, line.allSatisfy({ $0 == 0x0D || $0 == 0x0A }) {
                inBody = true
            }
            out += line
            lineStart = index + 1
        }
        return out
    }

    /// RFC 1939 byte-stuffing: a line starting with "." gets another ".". Copies whole lines,
    /// not bytes: this runs for every message the server holds.
    static func writeStuffed(_ bytes: [UInt8], into out: inout ByteBuffer) {
        var lineStart = 0
        while lineStart < bytes.count {
            let lineEnd = bytes[lineStart...].firstIndex(of: 0x0A).map { $0 + 1 } ?? bytes.count
            if bytes[lineStart] == UInt8(ascii: ".") { out.writeInteger(UInt8(ascii: ".")) }
            out.writeBytes(bytes[lineStart..<lineEnd])
            lineStart = lineEnd
        }
        if let last = bytes.last, last != 0x0A { out.writeStaticString("\r\n") }
    }

}

import Foundation
