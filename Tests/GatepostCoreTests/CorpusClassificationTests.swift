import Crypto
import Foundation
import GatepostCatalog
import GatepostMIME
import NIOCore
import Testing
@testable import GatepostCore

/// The classification rules (README, "How a message is classified") over the corpus of tricky
/// messages in Tests/GatepostMIMETests/Corpus, through the same ingest and assembly a poll uses.
struct CorpusIngest {
    static let folder = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("GatepostMIMETests/Corpus")

    static func message(_ name: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: folder.appendingPathComponent(name)))
    }

    static func allNames() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".eml") }.sorted()
    }

    static let site: RemoteSite? = site(classify: nil)

    /// The corpus site, with a `classify:` block when given.
    static func site(classify: String?) -> RemoteSite? {
        try? SiteLoader(environment: [:]).parse("""
            pop3:
              host: 127.0.0.1
              security: none
              allow_plaintext_password: true
              user: u
              password: p
            application: orders
            \(classify.map { "classify: \($0)" } ?? "")
            """, file: "/tmp/corpus.yaml")
    }

    struct Outcome {
        var record: TransferRecord
        /// Kept file name (message.txt for the text kept in the record) -> its bytes.
        var files: [String: [UInt8]]
        /// Name -> the suffix of its file in `in/<site>/` ("" for the main file).
        var suffixes: [String: String] = [:]
        /// Names of the kept files still in memory (written by the commit, not yet in `tmp/`).
        var inMemory: Set<String> = []
        /// The other transfers of the message (classify.split_attachments), with their files.
        var siblings: [(record: TransferRecord, files: [String: [UInt8]])] = []
    }

    /// Ingests `bytes` in chunks of `chunkSize` (nil: one chunk) and assembles the record.
    static func ingest(
        _ bytes: [UInt8], chunkSize: Int? = nil, limits: MIMELimits = .default, site: RemoteSite? = Self.site,
        processMemoryAvailable: @escaping () -> Int = { HeldBodies.available }
    ) throws -> Outcome {
        let site = try #require(site)
        let spool = try Spool(root: try makeTemporaryDirectory("corpus"))
        let id = TransferRecord.newID()
        let prefix = spool.temporaryPrefix(id: id)
        let scratch = RawMessageScratch(folder: spool.temporaryRoot)
        let ingest = try MessageIngest(
            filePrefix: prefix, raw: scratch, limits: limits, maxSize: 1 << 30, processMemoryAvailable: processMemoryAvailable
        )
        defer { HeldBodies.release(ingest.heldBytes) }
        let size = chunkSize ?? max(1, bytes.count)
        var offset = 0
        while offset < bytes.count {
            let end = min(bytes.count, offset + size)
            try ingest.consume(ByteBuffer(bytes: bytes[offset..<end]))
            offset = end
        }
        let result = try ingest.finish()
        let assembled = try TransferAssembler.assemble(result, site: site, id: id, uidl: "u1", filePrefix: prefix, duplicateOf: nil)
        var files: [String: [UInt8]] = [:]
        var keptInTemporary: [String] = []
        for file in assembled.files {
            switch file.content {
            case .file(let path):
                files[file.name] = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
                keptInTemporary.append(path)
            case .bytes(let bytes):
                files[file.name] = bytes
            }
        }
        var siblings: [(record: TransferRecord, files: [String: [UInt8]])] = []
        for sibling in assembled.siblings {
            var siblingFiles: [String: [UInt8]] = [:]
            for file in sibling.files {
                switch file.content {
                case .file(let path):
                    siblingFiles[file.name] = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
                    keptInTemporary.append(path)
                case .bytes(let bytes):
                    siblingFiles[file.name] = bytes
                }
            }
            var record = sibling.record
            record.id = "T\(siblings.count + 2)"
            record.receivedAt = Date(timeIntervalSince1970: 0)
            record.classification = record.classification?.replacingOccurrences(of: assembled.record.id, with: "T")
            siblings.append((record, siblingFiles))
        }
        if let text = assembled.record.messageText {
            #expect(files[TransferAssembler.textFileName] == nil, "the message text is kept once")
            files[TransferAssembler.textFileName] = Array(text.utf8)
        }
        let left = try FileManager.default.contentsOfDirectory(atPath: spool.temporaryRoot)
            .map { spool.temporaryRoot + "/" + $0 }.filter { $0 != scratch.path }
        #expect(Set(left) == Set(keptInTemporary), "tmp/ holds exactly the kept files")
        var record = assembled.record
        record.id = "T"
        record.receivedAt = Date(timeIntervalSince1970: 0)
        return Outcome(
            record: record, files: files,
            suffixes: Dictionary(assembled.files.map { ($0.name, $0.suffix) }, uniquingKeysWith: { first, _ in first }),
            inMemory: Set(assembled.files.compactMap { file in
                if case .bytes = file.content { return file.name }
                return nil
            }),
            siblings: siblings
        )
    }

    static func text(_ bytes: [UInt8]?) -> String? {
        bytes.map { String(decoding: $0, as: UTF8.self) }
    }
}

@Suite struct CorpusClassificationTests {
    /// The property the issue asks for, one level up from the parser: the same record and the
    /// same files whatever the chunking.
    @Test(arguments: [1, 7, 4096])
    func everyCorpusMessageGivesTheSameRecordInChunks(chunkSize: Int) throws {
        // With the table's defaults, and with every classify: option on.
        let sites = [CorpusIngest.site, CorpusIngest.site(classify: "{text_only: msg, bare_file: xfer, split_attachments: true}")]
        let names = try CorpusIngest.allNames()
        for (site, name) in sites.flatMap({ site in names.map { (site, $0) } }) {
            let bytes = try CorpusIngest.message(name)
            let whole = try CorpusIngest.ingest(bytes, site: site)
            let chunked = try CorpusIngest.ingest(bytes, chunkSize: chunkSize, site: site)
            #expect(chunked.record == whole.record, "\(name) in chunks of \(chunkSize)")
            #expect(chunked.files == whole.files, "\(name) in chunks of \(chunkSize)")
            #expect(chunked.siblings.map(\.record) == whole.siblings.map(\.record), "\(name) in chunks of \(chunkSize)")
        }
    }

    @Test(arguments: [
        ("xfer-basic.eml", "invoice-42.pdf"),
        ("rfc2231-continuations.eml", "Übersicht Groß.csv"),
        ("rfc2047-filename.eml", "Bäckerei_liste.csv"),
        ("alternative-body-plus-file.eml", "orders.zip"),
        ("related-inline-images.eml", "order.xml"),
        ("message-rfc822-attachment.eml", "attached-message.eml"),
        ("missing-final-boundary.eml", "data.bin"),
        ("bare-lf.eml", "report.txt"),
        ("boundary-quirks.eml", "q.dat"),
        ("base64-junk.eml", "hello.txt"),
        ("uuencode.eml", "hello.txt"),
        ("hostile-filename.eml", "passwd"),
        ("raw-8bit-headers.eml", "Straße.txt"),
        ("empty-parts.eml", "empty.bin"),
        ("file-named-like-a-part.eml", "part-1"),
        // An RFC 2231 value in quotes, as Pine sends it.
        ("rfc2231-quoted-value.eml", "HasenundFrösche.txt"),
        // The signature of a multipart/signed is no file; the signed content has one.
        ("pgp-signed-file.eml", "orders.csv"),
        // A file without a name is named from its type.
        ("unnamed-pdf.eml", "attachment.pdf"),
        ("message-news-attachment.eml", "attached-message.eml"),
    ])
    func oneAttachedFileIsXFERUnderItsDecodedSafeName(name: String, fileName: String) throws {
        let outcome = try CorpusIngest.ingest(try CorpusIngest.message(name))
        #expect(outcome.record.type == .xfer, "\(name)")
        #expect(outcome.record.fileName == fileName, "\(name)")
        #expect(outcome.files[fileName] != nil, "\(name) keeps \(fileName)")
        #expect(outcome.record.error == nil, "\(name)")
    }

    /// Message texts stay in memory and go into the record; past the memory budget they are
    /// files, and an XFER then keeps its text as `<id>.txt`.
    @Test func theMessageTextIsInTheRecordUnlessItIsLarge() throws {
        func message(text: String) -> [UInt8] {
            Array("""
                From: a@example.com\r
                Message-ID: <big@example.com>\r
                Content-Type: multipart/mixed; boundary=b\r
                \r
                --b\r
                Content-Type: text/plain\r
                \r
                \(text)\r
                --b\r
                Content-Type: text/csv; name=data.csv\r
                \r
                1,2\r
                --b--\r

                """.utf8)
        }
        let small = try CorpusIngest.ingest(message(text: "see attached"), processMemoryAvailable: { .max })
        #expect(small.record.messageText == "see attached")
        #expect(small.inMemory == ["data.csv"], "a small file waits in memory for the commit")
        // When the process holds all it may (HeldBodies), bodies go to files as they arrive.
        let full = try CorpusIngest.ingest(message(text: "see attached"), processMemoryAvailable: { 0 })
        #expect(full.inMemory.isEmpty)
        #expect(full.record.messageText == nil)
        #expect(full.suffixes == ["data.csv": "", "message.txt": ".txt"])
        #expect(CorpusIngest.text(full.files["data.csv"]) == "1,2")
        // Not hashed whole: it has a Message-ID, and is not kept whole.
        #expect(small.record.messageSha256 == nil)
        #expect(small.suffixes == ["data.csv": ""])

        // A NUL byte would cut a catalog TEXT value: such a text is kept as a file.
        let withNUL = try CorpusIngest.ingest(message(text: "before\u{0}after"))
        #expect(withNUL.record.messageText == nil)
        #expect(withNUL.suffixes == ["data.csv": "", "message.txt": ".txt"])
        #expect(withNUL.files["message.txt"] == Array("before\u{0}after".utf8))

        let line = String(repeating: "x", count: 998) + "\r\n"
        let text = String(repeating: line, count: 1200)  // 1.2 MB: past the memory budget
        for chunkSize in [nil, 4096] {
            let large = try CorpusIngest.ingest(message(text: text), chunkSize: chunkSize)
            #expect(large.record.messageText == nil)
            #expect(large.suffixes == ["data.csv": "", "message.txt": ".txt"])
            #expect(large.files["message.txt"] == Array(text.utf8))
            #expect(CorpusIngest.text(large.files["data.csv"]) == "1,2")
        }
    }

    @Test func decodedContentsAndTheMessageText() throws {
        let uu = try CorpusIngest.ingest(try CorpusIngest.message("uuencode.eml"))
        #expect(uu.record.sha256 == "8bc5a3af068bf2bc394dd6b39a41b16c6d1381ecf363198f1e7d02a037875804")
        #expect(CorpusIngest.text(uu.files["message.txt"]) == "Here is the file.\r\n\r\n\r\nRegards\r\n")

        // The attachment is called like the text part's working file: neither clobbers the other.
        let clash = try CorpusIngest.ingest(try CorpusIngest.message("file-named-like-a-part.eml"))
        #expect(CorpusIngest.text(clash.files["part-1"]) == "the file")
        #expect(CorpusIngest.text(clash.files["message.txt"]) == "the text")

        let junk = try CorpusIngest.ingest(try CorpusIngest.message("base64-junk.eml"))
        #expect(CorpusIngest.text(junk.files["hello.txt"]) == "Hello, world!")

        let unterminated = try CorpusIngest.ingest(try CorpusIngest.message("missing-final-boundary.eml"))
        #expect(unterminated.files["data.bin"] == [0, 1, 2, 3, 4, 5])

        let binary = try CorpusIngest.ingest(try CorpusIngest.message("raw-8bit-headers.eml"))
        #expect(binary.files["Straße.txt"] == [0, 1, 2, 0xFF, 0xFE])
        #expect(binary.record.subject == "Grüße aus Köln")

        let quirks = try CorpusIngest.ingest(try CorpusIngest.message("boundary-quirks.eml"))
        #expect(CorpusIngest.text(quirks.files["message.txt"]) == "text before\r\n--with spaces and (parens)-not-a-boundary\r\nstill text")

        // The text part was ISO-8859-1; what is kept is UTF-8.
        let latin1 = try CorpusIngest.ingest(try CorpusIngest.message("rfc2047-filename.eml"))
        #expect(CorpusIngest.text(latin1.files["message.txt"]) == "Grüße")
        #expect(latin1.record.sender == "Jürgen <j@partner.example>")
    }

    @Test func alternativeTextIsMSGConvertedToUTF8() throws {
        let outcome = try CorpusIngest.ingest(try CorpusIngest.message("msg-latin1-alternative.eml"))
        #expect(outcome.record.type == .msg)
        #expect(outcome.record.fileName == "orders")
        #expect(CorpusIngest.text(outcome.files["message.txt"]) == "Grüße aus Köln")
        #expect(CorpusIngest.text(outcome.files["message.html"]) == "<p>Grüße €</p>")

        let qp = try CorpusIngest.ingest(try CorpusIngest.message("qp-soft-breaks.eml"))
        #expect(qp.record.type == .msg)
        #expect(CorpusIngest.text(qp.files["message.txt"])
            == "A long line that is wrapped with a soft break, trailing space    \r\nand an equals sign =, and a malformed =ZZ escape.")
        #expect(CorpusIngest.text(qp.files["message.html"]) == "<p>café</p>")
    }

    @Test(arguments: [
        ("two-files.eml", "2 attached files in one message"),
        ("digest.eml", "2 attached files in one message"),
        ("single-part-text.eml", "a single-part text/plain message"),
        ("no-header-end.eml", "a single-part text/plain message"),
        ("nesting-past-limit.eml", "message exceeds the multipart nesting depth limit"),
        ("header-line-past-limit.eml", "message exceeds the header line length limit"),
        // Looked like a uuencoded file, was not: the text is kept whole, not decoded into garbage.
        ("begin-prose.eml", "malformed body: a uuencoded file (notes on the new contract) that does not end properly"),
        // A "file" line far longer than any encoded line ends it: kept whole, never overflowing.
        ("uuencode-overlong-line.eml", "malformed body: a uuencoded file (x.bin) that does not end properly"),
        // A signed text is a text: its signature is no attached file.
        ("smime-signed-text.eml", "a single-part text/plain message"),
        ("external-body-pointer.eml", "a multipart/mixed message whose only attachment is a pointer to a document elsewhere (message/external-body)"),
        // A bounce and an auto-reply carry the message they answer: never a transfer.
        ("bounce-old-style.eml", "automatic message (bounce or auto-reply)"),
        ("vacation-autoreply.eml", "automatic message (bounce or auto-reply)"),
        // By default a message that is one file is kept whole (classify.bare_file changes it).
        ("scanner-bare-pdf.eml", "a single-part application/pdf message"),
        ("text-only-html.eml", "a single-part text/html message"),
    ])
    func everythingElseIsKeptWholeAsRECOVER(name: String, reason: String) throws {
        let bytes = try CorpusIngest.message(name)
        let outcome = try CorpusIngest.ingest(bytes)
        #expect(outcome.record.type == .xfer)
        #expect(outcome.record.fileName == TransferRecord.recoverFileName)
        #expect(outcome.record.error == "kept whole: \(reason)")
        #expect(outcome.record.classification == reason, "the reason has a field of its own")
        #expect(outcome.files[MessageIngest.rawFileName] == bytes, "the whole message, byte for byte")
        #expect(outcome.record.sha256 == SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined())
        #expect(outcome.record.messageSha256 == outcome.record.sha256)
        #expect(outcome.files.count == 1)
    }

    /// The renderings of a multipart/alternative are the message, whatever their parameters say.
    @Test(arguments: ["mailutils-alternative-named-html.eml", "alternative-attachment-disposition.eml"])
    func alternativesAreTheMessageNotAttachments(name: String) throws {
        let outcome = try CorpusIngest.ingest(try CorpusIngest.message(name))
        #expect(outcome.record.type == .msg)
        #expect(outcome.record.classification == "a multipart/alternative of text")
        #expect(CorpusIngest.text(outcome.files["message.txt"]) == "Nothing to send this week.")
        #expect(CorpusIngest.text(outcome.files["message.html"])?.contains("<p>Nothing to send this week.</p>") == true)
        #expect(outcome.files.count == 2)
    }

    @Test func htmlMailWithInlineImagesIsMSGKeepingTheImages() throws {
        let outcome = try CorpusIngest.ingest(try CorpusIngest.message("alternative-related-inline-images.eml"))
        #expect(outcome.record.type == .msg)
        #expect(outcome.record.classification == "a multipart/alternative of text, with inline resources")
        #expect(CorpusIngest.text(outcome.files["message.txt"]) == "Hello, this is our new logo.\r\n")
        #expect(CorpusIngest.text(outcome.files["message.html"])?.contains("cid:F00DCAFE-0001@partner.example") == true)
        #expect(outcome.files["logo.png"] == Array(Data(base64Encoded: "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAA=") ?? Data()))
        #expect(outcome.suffixes["logo.png"] == ".inline-1")
    }

    @Test func aSignedMessageRecordsHowItWasSigned() throws {
        let text = try CorpusIngest.ingest(try CorpusIngest.message("smime-signed-text.eml"))
        #expect(text.record.signature == "S/MIME (application/pkcs7-signature)")
        let file = try CorpusIngest.ingest(try CorpusIngest.message("pgp-signed-file.eml"))
        #expect(file.record.signature == "OpenPGP (application/pgp-signature)")
        #expect(CorpusIngest.text(file.files["orders.csv"]) == "id,qty\r\n1,5\r\n")
        #expect(CorpusIngest.text(file.files["message.txt"]) == "Orders attached.\r\n")
    }

    @Test func aSitesClassifyOptionsGoBeyondTheTable() throws {
        let bareFile = CorpusIngest.site(classify: "{bare_file: xfer}")
        let scan = try CorpusIngest.ingest(try CorpusIngest.message("scanner-bare-pdf.eml"), site: bareFile)
        #expect(scan.record.type == .xfer)
        #expect(scan.record.fileName == "scan-0042.pdf")
        #expect(CorpusIngest.text(scan.files["scan-0042.pdf"])?.hasPrefix("%PDF-1.4") == true)
        #expect(scan.record.classification == "a message that is one application/pdf file (classify.bare_file)")

        let textOnly = CorpusIngest.site(classify: "{text_only: msg}")
        let html = try CorpusIngest.ingest(try CorpusIngest.message("text-only-html.eml"), site: textOnly)
        #expect(html.record.type == .msg)
        #expect(CorpusIngest.text(html.files["message.html"]) == "<p>Please call us about order 42.</p>\r\n")
        #expect(html.suffixes["message.html"] == "")
        let signed = try CorpusIngest.ingest(try CorpusIngest.message("smime-signed-text.eml"), site: textOnly)
        #expect(signed.record.type == .msg)
        #expect(CorpusIngest.text(signed.files["message.txt"]) == "Order 42 confirmed.\r\n")
        // Several files: one transfer each, all from the one message.
        let split = CorpusIngest.site(classify: "{split_attachments: true}")
        for chunkSize in [nil, 1, 7, 4096] {
            let two = try CorpusIngest.ingest(try CorpusIngest.message("two-files.eml"), chunkSize: chunkSize, site: split)
            #expect(two.record.type == .xfer)
            #expect(two.record.classification == "2 attached files, one transfer each (classify.split_attachments)")
            #expect(two.siblings.count == 1)
            let sibling = try #require(two.siblings.first)
            #expect(sibling.record.type == .xfer && sibling.record.fileName != two.record.fileName)
            #expect(sibling.record.messageId == two.record.messageId && sibling.record.uidl == two.record.uidl)
            #expect(sibling.record.ack == .none, "one acknowledgment per message, on the first transfer")
            #expect(sibling.record.classification == "file 2 of 2 of one message (classify.split_attachments); the first is transfer T")
            let siblingName = try #require(sibling.record.fileName)
            #expect(sibling.files[siblingName] != nil)
            #expect(two.files[try #require(two.record.fileName)] != nil)
        }
        // An option never turns a bounce into a transfer.
        let bounce = try CorpusIngest.ingest(try CorpusIngest.message("bounce-old-style.eml"), site: bareFile)
        #expect(bounce.record.fileName == TransferRecord.recoverFileName)
    }

    @Test func aDispositionNotificationIsEERPWithItsFields() throws {
        let outcome = try CorpusIngest.ingest(try CorpusIngest.message("mdn-report.eml"))
        #expect(outcome.record.type == .eerp)
        #expect(outcome.record.originalMessageId == "out-1@gatepost.example")
        #expect(outcome.record.disposition == "automatic-action/MDN-sent-automatically; processed")
        #expect(outcome.record.recipientReports == [RecipientReport(
            recipient: "edi@partner.example", disposition: "automatic-action/MDN-sent-automatically; processed"
        )])
        #expect(outcome.record.ack == .none, "a report is never acknowledged")
    }

    @Test func aDeliveryStatusNotificationGivesEachRecipientsActionAndStatus() throws {
        let outcome = try CorpusIngest.ingest(try CorpusIngest.message("dsn-report.eml"))
        #expect(outcome.record.type == .eerp)
        #expect(outcome.record.recipientReports == [
            RecipientReport(recipient: "gone@partner.example", action: "failed", status: "5.1.1"),
            RecipientReport(recipient: "slow@partner.example", action: "delayed", status: "4.4.7"),
        ])
        #expect(outcome.record.originalEnvelopeId == "out-2")
        #expect(outcome.record.originalMessageId == "out-2@gatepost.example", "from the returned header")
    }

    @Test func aPostfixBounceNamesTheEnvelopeTheOriginalRecipientAndTheReturnedMessageId() throws {
        let outcome = try CorpusIngest.ingest(try CorpusIngest.message("dsn-postfix-bounce.eml"))
        #expect(outcome.record.type == .eerp)
        #expect(outcome.record.originalEnvelopeId == "T1764291723000-0a1b2c3d")
        #expect(outcome.record.originalMessageId == "T1764291723000-0a1b2c3d@gatepost.test")
        #expect(outcome.record.recipientReports == [
            RecipientReport(recipient: "edi+files@partner.example", action: "failed", status: "5.1.1"),
        ], "the address we sent to (ORCPT, xtext-decoded), not the alias it reached")
        #expect(outcome.record.disposition == "failed 5.1.1")
    }

    @Test func everyLimitKeepsTheMessageWholeRatherThanFailing() throws {
        let bytes = try CorpusIngest.message("xfer-basic.eml")
        let limits: [MIMELimits] = [
            MIMELimits(maxHeaderBytes: 100),
            MIMELimits(maxHeaderLineLength: 20),
            MIMELimits(maxDepth: 0),
            MIMELimits(maxParts: 2),
            MIMELimits(maxMessageSize: 1000),
        ]
        for limit in limits {
            let outcome = try CorpusIngest.ingest(bytes, chunkSize: 7, limits: limit)
            #expect(outcome.record.fileName == TransferRecord.recoverFileName, "\(limit)")
            #expect(outcome.record.error?.hasPrefix("kept whole: message exceeds the") == true, "\(limit)")
            #expect(outcome.files[MessageIngest.rawFileName] == bytes)
        }
    }
}
