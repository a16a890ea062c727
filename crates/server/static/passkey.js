// Runs the WebAuthn ceremony whose options the page carries (data-options, from webauthn-rs)
// and posts the browser's answer with the form. Starts at once and again on the button; a
// cancelled or failed ceremony leaves the page as it is, with a message.
(function () {
  'use strict';
  var form = document.getElementById('passkey-form');
  if (!form) return;
  var status = document.getElementById('passkey-status');
  var button = document.getElementById('passkey-start');
  var mode = form.dataset.passkey;
  var options = JSON.parse(form.dataset.options).publicKey;

  function bytes(text) {
    var base64 = text.replace(/-/g, '+').replace(/_/g, '/');
    while (base64.length % 4) base64 += '=';
    var raw = atob(base64);
    var out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
    return out.buffer;
  }

  function text(buffer) {
    if (!buffer) return null;
    var view = new Uint8Array(buffer);
    var raw = '';
    for (var i = 0; i < view.length; i++) raw += String.fromCharCode(view[i]);
    return btoa(raw).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }

  function withIds(list) {
    return (list || []).map(function (c) {
      var copy = Object.assign({}, c);
      copy.id = bytes(c.id);
      return copy;
    });
  }

  function answer(credential) {
    var r = credential.response;
    var response = { clientDataJSON: text(r.clientDataJSON) };
    if (mode === 'create') {
      response.attestationObject = text(r.attestationObject);
      if (r.getTransports) response.transports = r.getTransports();
    } else {
      response.authenticatorData = text(r.authenticatorData);
      response.signature = text(r.signature);
      response.userHandle = text(r.userHandle);
    }
    return {
      id: credential.id,
      rawId: text(credential.rawId),
      type: credential.type,
      response: response,
      extensions: {}
    };
  }

  function run() {
    if (!window.PublicKeyCredential || !navigator.credentials) {
      status.textContent = form.dataset.unsupported;
      return;
    }
    status.textContent = form.dataset.working;
    button.disabled = true;
    var publicKey = Object.assign({}, options, { challenge: bytes(options.challenge) });
    var call;
    if (mode === 'create') {
      publicKey.user = Object.assign({}, options.user, { id: bytes(options.user.id) });
      publicKey.excludeCredentials = withIds(options.excludeCredentials);
      call = navigator.credentials.create({ publicKey: publicKey });
    } else {
      publicKey.allowCredentials = withIds(options.allowCredentials);
      call = navigator.credentials.get({ publicKey: publicKey });
    }
    call.then(function (credential) {
      form.elements.answer.value = JSON.stringify(answer(credential));
      form.submit();
    }, function () {
      status.textContent = form.dataset.cancelled;
      button.disabled = false;
    });
  }

  button.addEventListener('click', run);
  run();
})();
