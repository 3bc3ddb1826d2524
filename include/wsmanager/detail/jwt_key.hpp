// SPDX-License-Identifier: BSL-1.0
#pragma once

// The public key of a token issuer (Options::auth_public_key): loading it from PEM text or a
// PEM file, the one JOSE algorithm it verifies (RS256 for RSA, ES256 for EC P-256), and the
// check of a signature with it through OpenSSL's EVP API.
//
// A jwt_key is immutable once loaded and is shared by every handshake: EVP_DigestVerify with
// a per-call EVP_MD_CTX only reads the EVP_PKEY, so concurrent verifications are safe.

#include <climits>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

namespace wsmanager::detail {

/// The JWS algorithms a jwt_key can verify; the key's type decides which one.
enum class jwt_key_algorithm { rs256, es256 };

/// A token issuer's public key. Cheap to copy (the EVP_PKEY is shared).
class jwt_key {
public:
    /// The smallest RSA modulus accepted, in bits (NIST SP 800-57; what identity providers use).
    static constexpr int min_rsa_bits = 2048;

    /**
     * Loads a key from `setting`: PEM text when it contains `-----BEGIN`, else the path of a
     * PEM file. The first PEM block (text before it is skipped) must be a `PUBLIC KEY`
     * (SubjectPublicKeyInfo) or a `CERTIFICATE`, whose key is taken; the key must be RSA of
     * at least min_rsa_bits, or EC on P-256.
     * @throws std::invalid_argument with a reason that reads after the setting's name
     * ("holds no PEM ..."), never the key material itself.
     */
    static jwt_key load(std::string const& setting) {
        std::string_view text = setting;
        bool const is_text = text.find("-----BEGIN") != std::string_view::npos;
        if (is_text) {
            // PEM wants its armour at the start of a line; an indented value is still PEM.
            text.remove_prefix(text.find_first_not_of(" \t\r\n"));
            if (text.size() > static_cast<std::size_t>(INT_MAX)) {
                throw std::invalid_argument("is too long to be a PEM key");
            }
        }
        std::unique_ptr<BIO, decltype(&BIO_free)> bio(
            is_text ? BIO_new_mem_buf(text.data(), static_cast<int>(text.size()))
                    : BIO_new_file(setting.c_str(), "r"),
            &BIO_free);
        if (!bio) {
            ERR_clear_error();
            if (is_text) throw std::bad_alloc();
            throw std::invalid_argument("names a file that cannot be read: '" + setting +
                                        "' (PEM text must contain -----BEGIN)");
        }
        std::string const where = is_text ? "" : " (file '" + setting + "')";
        return jwt_key(read_first_pem_key(*bio, where));
    }

    jwt_key_algorithm algorithm() const noexcept { return algorithm_; }

    /// The JOSE name of algorithm(): the only "alg" a token verified with this key may carry.
    std::string_view algorithm_name() const noexcept {
        return algorithm_ == jwt_key_algorithm::rs256 ? "RS256" : "ES256";
    }

    /**
     * True when `signature` (the decoded third part of a JWS) signs `signing_input` under
     * this key: RSASSA-PKCS1-v1_5 with SHA-256 for RS256 (a signature as long as the
     * modulus), ECDSA P-256 with SHA-256 for ES256 (JOSE's raw 64-byte r||s, RFC 7518
     * section 3.4; any other length is refused).
     * @par Thread Safety
     * Safe to call concurrently.
     */
    bool verify(std::string_view signing_input, std::string_view signature) const {
        std::string der;
        if (algorithm_ == jwt_key_algorithm::es256) {
            if (signature.size() != 64) return false;
            der = es256_signature_to_der(signature);
            if (der.empty()) return false;
            signature = der;
        } else if (signature.size() != static_cast<std::size_t>(EVP_PKEY_get_size(key_.get()))) {
            return false;
        }
        std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> context(EVP_MD_CTX_new(),
                                                                        &EVP_MD_CTX_free);
        bool const valid =
            context &&
            EVP_DigestVerifyInit(context.get(), nullptr, EVP_sha256(), nullptr, key_.get()) == 1 &&
            EVP_DigestVerify(
                context.get(), reinterpret_cast<unsigned char const*>(signature.data()),
                signature.size(), reinterpret_cast<unsigned char const*>(signing_input.data()),
                signing_input.size()) == 1;
        // A refused signature leaves errors in this thread's OpenSSL queue; left there, they
        // would be read by the next SSL_get_error of a TLS connection served on this thread.
        ERR_clear_error();
        return valid;
    }

private:
    using pkey_ptr = std::shared_ptr<EVP_PKEY>;

    explicit jwt_key(pkey_ptr key) : key_(std::move(key)) {
        if (EVP_PKEY_is_a(key_.get(), "RSA")) {
            int const bits = EVP_PKEY_get_bits(key_.get());
            if (bits < min_rsa_bits) {
                throw std::invalid_argument("is an RSA key of " + std::to_string(bits) +
                                            " bits: at least " + std::to_string(min_rsa_bits) +
                                            " are required");
            }
            algorithm_ = jwt_key_algorithm::rs256;
        } else if (EVP_PKEY_is_a(key_.get(), "EC")) {
            char group[64] = {};
            std::size_t length = 0;
            if (EVP_PKEY_get_group_name(key_.get(), group, sizeof group, &length) != 1 ||
                OBJ_txt2nid(group) != NID_X9_62_prime256v1) {
                ERR_clear_error();
                throw std::invalid_argument("is an EC key on curve '" + std::string(group) +
                                            "': only P-256 (ES256) is supported");
            }
            algorithm_ = jwt_key_algorithm::es256;
        } else {
            throw std::invalid_argument(
                "is a key of an unsupported type: RSA (RS256) or EC P-256 (ES256) expected");
        }
    }

    static pkey_ptr read_first_pem_key(BIO& bio, std::string const& where) {
        char* name = nullptr;
        char* header = nullptr;
        unsigned char* data = nullptr;
        long length = 0;
        if (PEM_read_bio(&bio, &name, &header, &data, &length) != 1) {
            ERR_clear_error();
            throw std::invalid_argument("holds no PEM public key or certificate" + where);
        }
        std::string const kind = name;
        OPENSSL_free(name);
        OPENSSL_free(header);
        std::unique_ptr<unsigned char, void (*)(unsigned char*)> der(
            data, [](unsigned char* p) { OPENSSL_free(p); });

        unsigned char const* cursor = der.get();
        EVP_PKEY* key = nullptr;
        if (kind == "PUBLIC KEY") {
            key = d2i_PUBKEY(nullptr, &cursor, length);
        } else if (kind == "CERTIFICATE") {
            std::unique_ptr<X509, decltype(&X509_free)> certificate(
                d2i_X509(nullptr, &cursor, length), &X509_free);
            if (certificate) key = X509_get_pubkey(certificate.get());  // a new reference
        } else if (kind.ends_with("PRIVATE KEY")) {
            throw std::invalid_argument("is a private key" + where +
                                        ": give its public key (openssl pkey -pubout)");
        } else {
            throw std::invalid_argument("holds a PEM '" + kind + "' block" + where +
                                        ": expected PUBLIC KEY or CERTIFICATE");
        }
        pkey_ptr owned(key, &EVP_PKEY_free);
        if (!owned || cursor != der.get() + length) {
            ERR_clear_error();
            throw std::invalid_argument("holds a malformed PEM " + kind + where);
        }
        return owned;
    }

    /// JOSE's r||s (32 bytes each) as the DER ECDSA-Sig-Value EVP verifies; "" on failure.
    static std::string es256_signature_to_der(std::string_view raw) {
        auto const* bytes = reinterpret_cast<unsigned char const*>(raw.data());
        std::unique_ptr<ECDSA_SIG, decltype(&ECDSA_SIG_free)> signature(ECDSA_SIG_new(),
                                                                        &ECDSA_SIG_free);
        BIGNUM* r = BN_bin2bn(bytes, 32, nullptr);
        BIGNUM* s = BN_bin2bn(bytes + 32, 32, nullptr);
        if (!signature || r == nullptr || s == nullptr ||
            ECDSA_SIG_set0(signature.get(), r, s) != 1) {  // on success it owns r and s
            BN_free(r);
            BN_free(s);
            ERR_clear_error();
            return {};
        }
        unsigned char* der = nullptr;
        int const length = i2d_ECDSA_SIG(signature.get(), &der);
        if (length <= 0) {
            ERR_clear_error();
            return {};
        }
        std::string out(reinterpret_cast<char const*>(der), static_cast<std::size_t>(length));
        OPENSSL_free(der);
        return out;
    }

    pkey_ptr key_;
    jwt_key_algorithm algorithm_ = jwt_key_algorithm::rs256;
};

/**
 * The key for an Options::auth_public_key value, loaded at its first use in the process and
 * kept: Options::validate(), the handshake gate and default_authenticate() (which a host's
 * Authenticator may call per handshake) then share one parsed key instead of reading a PEM
 * for each handshake. A file is therefore read once per process; a failed load is not kept.
 * @throws std::invalid_argument as jwt_key::load.
 * @par Thread Safety
 * Safe from any thread.
 */
inline jwt_key shared_jwt_key(std::string const& setting) {
    static std::mutex mutex;
    static std::map<std::string, jwt_key, std::less<>> keys;
    std::lock_guard const lock(mutex);
    if (auto it = keys.find(setting); it != keys.end()) return it->second;
    // Hosts use one key or a few; a bound keeps a process that rotates keys from growing.
    if (keys.size() >= 16) keys.clear();
    return keys.emplace(setting, jwt_key::load(setting)).first->second;
}

}  // namespace wsmanager::detail
