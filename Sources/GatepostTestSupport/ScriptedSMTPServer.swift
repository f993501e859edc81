import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL

/// A tiny SMTP server on 127.0.0.1 for the session tests and the demo: it follows a script of
/// capabilities and refusals and records what it was sent. Not a mail server; the integration
/// tests use a real one (Postfix).
public final class ScriptedSMTPServer: Sendable {
    public struct Script: Sendable {
        public var extensions = ["PIPELINING", "SIZE 10000000", "8BITMIME", "AUTH PLAIN LOGIN", "ENHANCEDSTATUSCODES"]
        /// Recipients refused with this reply (the whole line, code included).
        public var refusedRecipients: [String: String] = [:]
        /// The user and password AUTH PLAIN accepts.
        public var user = "mailer"
        public var password = "s3cret-Pa55"
        /// Stop answering (but keep the connection open) once a line starts with this.
        public var silentFrom: String?
        public var queueID = "4Bx7Yq1Z2"
        /// TLS from the first byte (port 465 style).
        public var implicitTLS: NIOSSLContext?
        /// Offered as STARTTLS (only while the connection is not encrypted yet).
        public var startTLS: NIOSSLContext?
        /// Plaintext to send after the 220 to STARTTLS, in a write of its own and before the
        /// handshake, when the test calls ``ScriptedSMTPServer/sendInjections()`` (a man in
        /// the middle's injection, at the moment the test chooses).
        public var injectAfterStartTLS: String?
        /// Answer a command starting with this with a reply line that never ends (256 KiB
        /// without a line break, then silence).
        public var endlessReplyOn: String?
        /// After this many lines of message data, answer `421` and close: a server shutting
        /// down in the middle of DATA.
        public var closeWith421AfterDataLines: Int?

        public init() {}
    }

    public struct Record: Sendable {
        /// Whether the connection was encrypted when each command arrived.
        public var encryptedCommands: [String] = []
        /// Command lines, in order, outside message data.
        public var commands: [String] = []
        /// Each message's data as received: dot-stuffed, CRLF, without the final ".".
        public var messages: [[UInt8]] = []
    }

    let script: Script
    private let record = NIOLockedValueBox(Record())
    private let listener = LoopbackListener()

    public init(script: Script = Script()) {
        self.script = script
    }

    public var recorded: Record { record.withLockedValue { $0 } }

    /// What the server recorded once the client's QUIT has arrived (or after two seconds): the
    /// client closes after sending it, and the server's side may read it a moment later.
    public func recordedThroughQuit() async -> Record {
        for _ in 0..<200 where recorded.commands.last != "QUIT" {
            try? await Task.sleep(for: .milliseconds(10))
        }
        return recorded
    }

    public func start() async throws -> Int {
        try await listener.start { [self] channel in
            if let context = script.implicitTLS {
                try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context))
            }
            try channel.pipeline.syncOperations.addHandler(ScriptedSMTPHandler(server: self))
        }
    }

    public func stop() async {
        await listener.stop()
    }

    private let injections = NIOLockedValueBox<[(channel: any Channel, bytes: String, tls: NIOSSLContext)]>([])

    /// Sends the injections (``Script/injectAfterStartTLS``) that are due, then starts TLS on
    /// their connections; returns their bytes.
    @discardableResult
    public func sendInjections() -> Int {
        let due = injections.withLockedValue { due in
            defer { due = [] }
            return due
        }
        for (channel, bytes, tls) in due {
            channel.eventLoop.execute {
                channel.writeAndFlush(ByteBuffer(string: bytes), promise: nil)
                do {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls), position: .first)
                } catch {
                    channel.close(promise: nil)
                }
            }
        }
        return due.reduce(0) { $0 + $1.bytes.utf8.count }
    }

    fileprivate func holdInjection(_ bytes: String, tls: NIOSSLContext, for channel: any Channel) {
        injections.withLockedValue { $0.append((channel, bytes, tls)) }
    }

    fileprivate func update(_ change: (inout Record) -> Void) {
        record.withLockedValue { change(&$0) }
    }
}

private final class ScriptedSMTPHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let server: ScriptedSMTPServer
    private var pending: [UInt8] = []
    private var inData = false
    private var dataLines = 0
    private var message: [UInt8] = []
    private var acceptedRecipients = 0
    private var silent = false
    private var encrypted: Bool

    init(server: ScriptedSMTPServer) {
        self.server = server
        encrypted = server.script.implicitTLS != nil
    }

    func channelActive(context: ChannelHandlerContext) {
        send("220 scripted.test ESMTP ready", context: context)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        pending += buffer.readableBytesView
        // Lines are taken by index and the consumed part dropped once: removing each line from
        // the front would move the rest of a large message for every line, on an event loop
        // every test's connections share.
        var consumed = 0
        while let lf = pending[consumed...].firstIndex(of: 0x0A) {
            let line = Array(pending[consumed...lf])
            consumed = lf + 1
            let buffered = pending.count
            handle(line, context: context)
            // STARTTLS drops whatever came with it: the buffer is new, nothing is consumed.
            if pending.count != buffered {
                consumed = 0
                break
            }
        }
        pending.removeSubrange(..<consumed)
    }

    private func send(_ text: String, context: ChannelHandlerContext) {
        var out = context.channel.allocator.buffer(capacity: text.utf8.count + 2)
        out.writeString(text.replacingOccurrences(of: "\n", with: "\r\n") + "\r\n")
        context.writeAndFlush(wrapOutboundOut(out), promise: nil)
    }

    private func handle(_ rawLine: [UInt8], context: ChannelHandlerContext) {
        if inData {
            if rawLine == Array(".\r\n".utf8) {
                inData = false
                server.update { $0.messages.append(message) }
                message = []
                send("250 2.0.0 Ok: queued as \(server.script.queueID)", context: context)
            } else {
                message += rawLine
                dataLines += 1
                if let limit = server.script.closeWith421AfterDataLines, dataLines >= limit {
                    inData = false
                    silent = true
                    send("421 4.3.2 Service shutting down, closing transmission channel", context: context)
                    context.close(promise: nil)
                }
            }
            return
        }
        let line = String(decoding: rawLine, as: UTF8.self).trimmingCharacters(in: ["\r", "\n"])
        server.update { record in
            record.commands.append(line)
            if encrypted { record.encryptedCommands.append(line) }
        }
        guard !silent else { return }
        let script = server.script
        if let silentFrom = script.silentFrom, line.hasPrefix(silentFrom) {
            silent = true
            return
        }
        let upper = line.uppercased()
        if let endless = script.endlessReplyOn, upper.hasPrefix(endless.uppercased()) {
            silent = true
            var out = context.channel.allocator.buffer(capacity: 256 * 1024)
            out.writeString("250 " + String(repeating: "x", count: 256 * 1024))
            context.writeAndFlush(wrapOutboundOut(out), promise: nil)
            return
        }
        if upper.hasPrefix("EHLO ") {
            let offersStartTLS = script.startTLS != nil && !encrypted
            let lines = ["scripted.test greets \(line.dropFirst(5))"] + script.extensions + (offersStartTLS ? ["STARTTLS"] : [])
            send(lines.enumerated().map { "250\($0.offset == lines.count - 1 ? " " : "-")\($0.element)" }.joined(separator: "\n"), context: context)
        } else if upper == "STARTTLS", let tls = script.startTLS, !encrypted {
            send("220 2.0.0 Ready to start TLS", context: context)
            if let injected = script.injectAfterStartTLS {
                // TLS starts after the injection, when the test sends it.
                encrypted = true
                pending = []
                server.holdInjection(injected, tls: tls, for: context.channel)
                return
            }
            // The 220 has been flushed in clear text; everything after it goes through TLS.
            encrypted = true
            pending = []
            do {
                try context.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls), position: .first)
            } catch {
                context.close(promise: nil)
            }
        } else if upper.hasPrefix("AUTH PLAIN ") {
            let expected = Data("\0\(script.user)\0\(script.password)".utf8).base64EncodedString()
            send(line.dropFirst(11) == expected ? "235 2.7.0 Authentication successful" : "535 5.7.8 Error: authentication failed", context: context)
        } else if upper.hasPrefix("MAIL FROM:") {
            acceptedRecipients = 0
            send("250 2.1.0 Ok", context: context)
        } else if upper.hasPrefix("RCPT TO:<") {
            let address = String(line.dropFirst(9).prefix { $0 != ">" })
            if let refusal = script.refusedRecipients[address] {
                send(refusal, context: context)
            } else {
                acceptedRecipients += 1
                send("250 2.1.5 Ok", context: context)
            }
        } else if upper == "DATA" {
            if acceptedRecipients > 0 {
                inData = true
                send("354 End data with <CR><LF>.<CR><LF>", context: context)
            } else {
                send("554 5.5.1 Error: no valid recipients", context: context)
            }
        } else if upper == "RSET" {
            acceptedRecipients = 0
            send("250 2.0.0 Ok", context: context)
        } else if upper == "QUIT" {
            send("221 2.0.0 Bye", context: context)
            context.close(promise: nil)
        } else {
            send("502 5.5.2 Error: command not recognized", context: context)
        }
    }
}
