import GatepostMIME
import Testing
@testable import GatepostCore

struct IgnoringHandler: MIMEPartHandler {
    mutating func partDidBegin(_ part: MIMEPart) throws {}
    mutating func part(_ index: Int, didReceive bytes: UnsafeRawBufferPointer) throws {}
    mutating func partDidEnd(_ index: Int) throws {}
}

func classify(_ message: String) throws -> MessageClass {
    var parser = MIMEStreamParser()
    var handler = IgnoringHandler()
    try parser.feed(Array(message.replacingOccurrences(of: "\n", with: "\r\n").utf8), into: &handler)
    try parser.finish(into: &handler)
    return Classifier.classify(parser.parts)
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
        """) == .message(text: 1, html: 2))
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
        """) == .report(report: 2))
    }

    @Test func twoFilesAreRECOVER() throws {
        guard case .recover(let reason) = try classify("""
        Content-Type: multipart/mixed; boundary=b

        --b
        Content-Disposition: attachment; filename=a.txt

        a
        --b
        Content-Disposition: attachment; filename=b.txt

        b
        --b--
        """) else {
            Issue.record("expected RECOVER")
            return
        }
        #expect(reason.contains("2 attached files"))
    }

    @Test func singlePartIsRECOVER() throws {
        guard case .recover = try classify("Subject: hi\n\nplain text\n") else {
            Issue.record("expected RECOVER")
            return
        }
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
