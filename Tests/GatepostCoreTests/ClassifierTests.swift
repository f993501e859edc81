import GatepostMIME
import Testing
@testable import GatepostCore

struct IgnoringHandler: MIMEPartHandler {
    mutating func partDidBegin(_ part: MIMEPart) throws {}
    mutating func part(_ index: Int, didReceive bytes: UnsafeRawBufferPointer) throws {}
    mutating func partDidEnd(_ index: Int) throws {}
}

func classification(_ message: String, options: ClassificationOptions = ClassificationOptions()) throws -> Classification {
    var parser = MIMEStreamParser()
    var handler = IgnoringHandler()
    try parser.feed(Array(message.replacingOccurrences(of: "\n", with: "\r\n").utf8), into: &handler)
    try parser.finish(into: &handler)
    return Classifier.classify(parser.parts, options: options)
}

func classify(_ message: String, options: ClassificationOptions = ClassificationOptions()) throws -> MessageClass {
    try classification(message, options: options).messageClass
}

@Suite struct ClassifierTests {
    @Test func mixedWithOneAttachmentIsXFER() throws {
        #expect(try classify("""
        Content-Type: multipart/mixed; boundary=b

        --b
        Content-Type: text/plain

        see attached
        --b
        Content-Type: application/pdf; name=a.pdf

        %PDF
        --b--
        """) == .transfer(file: 2, text: 1))
    }

    @Test func alternativeBodyPlusOneFileIsXFER() throws {
        #expect(try classify("""
        Content-Type: multipart/mixed; boundary=b

        --b
        Content-Type: multipart/alternative; boundary=c

        --c
        Content-Type: text/plain

        text
        --c
        Content-Type: text/html

        <p>text</p>
        --c--
        --b
        Content-Type: text/csv
        Content-Disposition: attachment; filename=data.csv

        a,b
        --b--
        """) == .transfer(file: 4, text: 2))
    }

    @Test func alternativeTextIsMSG() throws {
        #expect(try classify("""
        Content-Type: multipart/alternative; boundary=c

        --c
        Content-Type: text/plain

        text
        --c
        Content-Type: text/html

        <p>text</p>
        --c--
        """) == .message(text: 1, html: 2, resources: []))
    }

    @Test func reportIsEERP() throws {
        #expect(try classify("""
        Content-Type: multipart/report; report-type=disposition-notification; boundary=r

        --r
        Content-Type: text/plain

        processed
        --r
        Content-Type: message/disposition-notification

        Disposition: automatic-action/MDN-sent-automatically; processed
        --r--
        """) == .report(report: 2, returned: nil))
    }

    @Test func aDeliveryReportNamesWhatItReturnsOfTheOriginal() throws {
        for returnedType in ["text/rfc822-headers", "message/rfc822", "message/global-headers"] {
            #expect(try classify("""
            Content-Type: multipart/report; report-type=delivery-status; boundary=r

            --r
            Content-Type: text/plain

            Your message could not be delivered.
            --r
            Content-Type: message/delivery-status

            Reporting-MTA: dns; mx.acme.example

            Final-Recipient: rfc822; edi@acme.example
            Action: failed
            Status: 5.1.1
            --r
            Content-Type: \(returnedType)

            Message-ID: <T1@ours.example>
            Subject: File a.csv

            --r--
            """) == .report(report: 2, returned: 3), "\(returnedType)")
        }
    }

    @Test func twoFilesAreRECOVER() throws {
        let result = try classification("""
        Content-Type: multipart/mixed; boundary=b

        --b
        Content-Disposition: attachment; filename=a.txt

        a
        --b
        Content-Disposition: attachment; filename=b.txt

        b
        --b--
        """)
        #expect(result.messageClass == .recover)
        #expect(result.reason == "2 attached files in one message")
    }

    @Test func singlePartIsRECOVER() throws {
        #expect(try classify("Subject: hi\n\nplain text\n") == .recover)
    }

    @Test func inlineImagesOfARelatedBodyAreNotFiles() throws {
        #expect(try classify("""
        Content-Type: multipart/mixed; boundary=b

        --b
        Content-Type: multipart/related; boundary=r

        --r
        Content-Type: text/html

        <img src="cid:logo">
        --r
        Content-Type: image/png; name=logo.png
        Content-ID: <logo>

        PNG
        --r--
        --b
        Content-Type: application/zip
        Content-Disposition: attachment; filename=invoices.zip

        PK
        --b--
        """) == .transfer(file: 4, text: nil))
    }

    @Test func attachedMessageIsAFile() throws {
        #expect(try classify("""
        Content-Type: multipart/mixed; boundary=b

        --b
        Content-Type: text/plain

        forwarded
        --b
        Content-Type: message/rfc822

        Subject: inner

        inner
        --b--
        """) == .transfer(file: 2, text: 1))
    }
}

/// The structural rules for the shapes real mail programs send (one test per shape; the corpus
/// has a whole message of each).
@Suite struct StructureRuleTests {
    static let textAndHTML = """
        --c
        Content-Type: text/plain; charset=UTF-8

        text
        --c
        Content-Type: text/html; charset=UTF-8; name=body.html

        <p>text</p>
        --c--
        """

    @Test func alternativesAreRenderingsWhateverTheirParametersSay() throws {
        #expect(try classify("Content-Type: multipart/alternative; boundary=c\n\n" + Self.textAndHTML) == .message(text: 1, html: 2, resources: []))
        let attachmentDisposition = Self.textAndHTML.replacingOccurrences(of: "; name=body.html", with: "\nContent-Disposition: attachment; filename=body.html")
        #expect(try classify("Content-Type: multipart/alternative; boundary=c\n\n" + attachmentDisposition) == .message(text: 1, html: 2, resources: []))
    }

    @Test func aNonTextAlternativeIsNoMessageAndNoFile() throws {
        let result = try classification("""
        Content-Type: multipart/alternative; boundary=c

        --c
        Content-Type: text/plain

        text
        --c
        Content-Type: application/pdf; name=a.pdf

        %PDF
        --c--
        """)
        #expect(result.messageClass == .recover)
        #expect(result.reason == "a multipart/alternative message without an attached file")
    }

    @Test func htmlWithInlineImagesIsMSGKeepingTheImages() throws {
        #expect(try classify("""
        Content-Type: multipart/alternative; boundary=c

        --c
        Content-Type: text/plain

        text
        --c
        Content-Type: multipart/related; boundary=r

        --r
        Content-Type: text/html

        <img src="cid:logo">
        --r
        Content-Type: image/png
        Content-Disposition: inline; filename=logo.png
        Content-ID: <logo>

        PNG
        --r--
        --c--
        """) == .message(text: 1, html: 3, resources: [4]))
    }

    @Test func theStartPartOfARelatedIsItsRoot() throws {
        #expect(try classify("""
        Content-Type: multipart/mixed; boundary=b

        --b
        Content-Type: multipart/related; boundary=r; start="<root>"

        --r
        Content-Type: image/png
        Content-ID: <logo>

        PNG
        --r
        Content-Type: text/plain
        Content-ID: <root>

        body
        --r--
        --b
        Content-Type: application/pdf; name=a.pdf

        %PDF
        --b--
        """) == .transfer(file: 4, text: 3))
    }

    static let signedText = """
        Content-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256; boundary=s

        --s
        Content-Type: text/plain

        signed text
        --s
        Content-Type: application/pkcs7-signature; name=smime.p7s
        Content-Disposition: attachment; filename=smime.p7s

        MIAGCSqGSIb3DQEHAqCAMIACAQEx
        --s--
        """

    @Test func aSignatureIsNotAFile() throws {
        let result = try classification(Self.signedText)
        #expect(result.messageClass == .recover)
        #expect(result.reason == "a single-part text/plain message")
        #expect(result.signature == "S/MIME (application/pkcs7-signature)")
        #expect(try classify(Self.signedText, options: ClassificationOptions(textOnlyIsMessage: true)) == .message(text: 1, html: nil, resources: []))
    }

    @Test func aSignedMessageWithOneFileIsXFER() throws {
        let result = try classification("""
        Content-Type: multipart/signed; protocol="application/pgp-signature"; boundary=s

        --s
        Content-Type: multipart/mixed; boundary=b

        --b
        Content-Type: text/plain

        see attached
        --b
        Content-Type: application/octet-stream; name=orders.csv

        1,2
        --b--
        --s
        Content-Type: application/pgp-signature; name=signature.asc

        -----BEGIN PGP SIGNATURE-----
        --s--
        """)
        #expect(result.messageClass == .transfer(file: 3, text: 2))
        #expect(result.signature == "OpenPGP (application/pgp-signature)")
    }

    @Test func aFileWithoutANameIsStillAFile() throws {
        #expect(try classify("""
        Content-Type: multipart/mixed; boundary=b

        --b
        Content-Type: text/plain

        scan attached
        --b
        Content-Type: application/pdf

        %PDF
        --b--
        """) == .transfer(file: 2, text: 1))
        var parser = MIMEStreamParser()
        var handler = IgnoringHandler()
        try parser.feed(Array("Content-Type: application/pdf\r\n\r\n%PDF\r\n".utf8), into: &handler)
        try parser.finish(into: &handler)
        #expect(Classifier.proposedFileName(for: parser.parts[0]) == "attachment.pdf")
    }

    @Test func aPointerIsNotAFile() throws {
        let result = try classification("""
        Content-Type: multipart/mixed; boundary=b

        --b
        Content-Type: text/plain

        the document is on the server
        --b
        Content-Type: message/external-body; access-type=URL; URL="https://files.example/doc.pdf"

        Content-Type: application/pdf; name=doc.pdf

        --b--
        """)
        #expect(result.messageClass == .recover)
        #expect(result.reason.contains("message/external-body"))
    }

    @Test func messageNewsIsAnAttachedMessage() throws {
        #expect(try classify("""
        Content-Type: multipart/mixed; boundary=b

        --b
        Content-Type: text/plain

        forwarded article
        --b
        Content-Type: message/news

        Newsgroups: comp.mail.mime
        Subject: inner

        inner
        --b--
        """) == .transfer(file: 2, text: 1))
    }

    static let bounceCarryingAFile = """
        Content-Type: multipart/mixed; boundary=b

        --b
        Content-Type: text/plain

        The message could not be delivered.
        --b
        Content-Type: message/rfc822

        Subject: original

        original
        --b--
        """

    @Test func bouncesAndAutoRepliesAreNeverTransfers() throws {
        #expect(try classify(Self.bounceCarryingAFile) == .transfer(file: 2, text: 1))
        for header in ["Return-Path: <>", "Return-Path: < >", "Auto-Submitted: auto-replied", "Auto-Submitted: auto-generated; type=bounce"] {
            let result = try classification(header + "\n" + Self.bounceCarryingAFile)
            #expect(result.messageClass == .recover, "\(header)")
            #expect(result.reason == "automatic message (bounce or auto-reply)", "\(header)")
        }
        #expect(try classify("Auto-Submitted: no\n" + Self.bounceCarryingAFile) == .transfer(file: 2, text: 1))
        #expect(try classify("Return-Path: <bounces@example.com>\n" + Self.bounceCarryingAFile) == .transfer(file: 2, text: 1))
    }

    @Test func anEncryptedMessageIsKeptForAnOperator() throws {
        let result = try classification("""
        Content-Type: multipart/encrypted; protocol="application/pgp-encrypted"; boundary=e

        --e
        Content-Type: application/pgp-encrypted

        Version: 1
        --e
        Content-Type: application/octet-stream; name=encrypted.asc

        -----BEGIN PGP MESSAGE-----
        --e--
        """)
        #expect(result.messageClass == .recover)
        #expect(result.reason.contains("multipart/encrypted"))
    }

    @Test func textOnlyMakesATextMessageMSG() throws {
        let options = ClassificationOptions(textOnlyIsMessage: true)
        #expect(try classify("Content-Type: text/plain\n\nhello\n", options: options) == .message(text: 0, html: nil, resources: []))
        #expect(try classify("Content-Type: text/html\n\n<p>hello</p>\n", options: options) == .message(text: 0, html: nil, resources: []))
        #expect(try classify("""
        Content-Type: multipart/mixed; boundary=b

        --b
        Content-Type: text/plain

        one
        --b
        Content-Type: text/plain

        two
        --b--
        """, options: options) == .message(text: 1, html: nil, resources: []))
        // A bare file is no text message.
        #expect(try classify("Content-Type: application/pdf\n\n%PDF\n", options: options) == .recover)
    }

    @Test func bareFileMakesAOnePartFileXFER() throws {
        let options = ClassificationOptions(bareFileIsTransfer: true)
        #expect(try classify("Content-Type: application/pdf; name=scan.pdf\n\n%PDF\n") == .recover)
        #expect(try classify("Content-Type: application/pdf; name=scan.pdf\n\n%PDF\n", options: options) == .transfer(file: 0, text: nil))
        #expect(try classify("Content-Type: text/plain\n\nhello\n", options: options) == .recover)
        #expect(try classify("Content-Type: application/pkcs7-mime; smime-type=enveloped-data\n\nMIAG\n", options: options) == .recover)
    }
}

@Suite struct ReportFieldsTests {
    @Test func dispositionNotification() {
        let fields = ReportFields.parse(Array("""
        Reporting-UA: gw.example; MFT\r
        Final-Recipient: rfc822; orders@acme.example\r
        Original-Message-ID: <out-1@ours.example>\r
        Disposition: automatic-action/MDN-sent-automatically; processed\r

        """.utf8))
        #expect(fields.originalMessageID == "out-1@ours.example")
        #expect(fields.finalRecipient == "orders@acme.example")
        #expect(fields.disposition == "automatic-action/MDN-sent-automatically; processed")
    }

    @Test func deliveryStatus() {
        let fields = ReportFields.parse(Array("""
        Reporting-MTA: dns; mx.example

        Final-Recipient: rfc822; x@example.com
        Action: failed
        Status: 5.1.1

        """.utf8))
        #expect(fields.finalRecipient == "x@example.com")
        #expect(fields.disposition == "failed 5.1.1")
    }
}
