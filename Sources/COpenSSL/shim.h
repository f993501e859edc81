#ifndef GATEPOST_COPENSSL_SHIM_H
#define GATEPOST_COPENSSL_SHIM_H

#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

// OpenSSL 3 declares these as function-like macros, which Swift cannot call.

static inline STACK_OF(X509) *gp_sk_X509_new_null(void) { return sk_X509_new_null(); }
static inline int gp_sk_X509_push(STACK_OF(X509) *stack, X509 *certificate) { return sk_X509_push(stack, certificate); }
static inline int gp_sk_X509_num(const STACK_OF(X509) *stack) { return sk_X509_num(stack); }
static inline X509 *gp_sk_X509_value(const STACK_OF(X509) *stack, int index) { return sk_X509_value(stack, index); }
static inline void gp_sk_X509_free(STACK_OF(X509) *stack) { sk_X509_free(stack); }
static inline void gp_sk_X509_pop_free(STACK_OF(X509) *stack) { sk_X509_pop_free(stack, X509_free); }
static inline long gp_BIO_get_mem_data(BIO *bio, char **data) { return BIO_get_mem_data(bio, data); }
static inline int gp_BIO_flush(BIO *bio) { return BIO_flush(bio); }

/// 1 when `cert` is among the recipients of the EnvelopedData or AuthEnvelopedData `cms` (key
/// transport or key agreement), 0 when not, -1 when the structure has no recipients. OpenSSL's
/// CMS_decrypt fails without a reason when it finds none (implicit rejection).
static inline int gp_cms_has_recipient(CMS_ContentInfo *cms, X509 *cert) {
    STACK_OF(CMS_RecipientInfo) *infos = CMS_get0_RecipientInfos(cms);
    if (infos == NULL) return -1;
    for (int i = 0; i < sk_CMS_RecipientInfo_num(infos); i++) {
        CMS_RecipientInfo *info = sk_CMS_RecipientInfo_value(infos, i);
        int type = CMS_RecipientInfo_type(info);
        if (type == CMS_RECIPINFO_TRANS && CMS_RecipientInfo_ktri_cert_cmp(info, cert) == 0) return 1;
        if (type == CMS_RECIPINFO_AGREE) {
            STACK_OF(CMS_RecipientEncryptedKey) *keys = CMS_RecipientInfo_kari_get0_reks(info);
            for (int j = 0; j < sk_CMS_RecipientEncryptedKey_num(keys); j++) {
                if (CMS_RecipientEncryptedKey_cert_cmp(sk_CMS_RecipientEncryptedKey_value(keys, j), cert) == 0) return 1;
            }
        }
    }
    return 0;
}

static inline unsigned long gp_XN_FLAG_RFC2253(void) { return XN_FLAG_RFC2253; }

static inline int gp_sk_OPENSSL_STRING_num(const STACK_OF(OPENSSL_STRING) *stack) { return sk_OPENSSL_STRING_num(stack); }
static inline const char *gp_sk_OPENSSL_STRING_value(const STACK_OF(OPENSSL_STRING) *stack, int index) {
    return sk_OPENSSL_STRING_value(stack, index);
}

#endif
