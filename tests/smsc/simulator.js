#!/usr/bin/env node
// SMSC simulator: the independent SMPP 3.4 peer Callgate's SMPP client is tested against.
//
// Built on the npm `smpp` package for PDU encoding/decoding; framing is done here so that
// every submit_sm can be recorded byte-exact (raw PDU, short_message, TLVs) and so that
// misbehaviour (drops, garbage PDUs, throttling, SMSC-initiated unbind) can be injected.
//
// Usage: node simulator.js [--host 127.0.0.1] [--port 0] [--control-port 0]
//                          [--system-id test] [--password secret] [scenario flags]
// On listening it prints one JSON line to stdout: {"smpp_port": N, "control_port": M}.
// Logs go to stderr. It exits on SIGTERM, SIGINT or EOF on stdin.
'use strict';

const net = require('net');
const http = require('http');
const smpp = require('smpp');

const STATUS = {
  ESME_ROK: 0x00,
  ESME_RINVMSGLEN: 0x01,
  ESME_RINVCMDLEN: 0x02,
  ESME_RINVCMDID: 0x03,
  ESME_RINVBNDSTS: 0x04,
  ESME_RALYBND: 0x05,
  ESME_RSYSERR: 0x08,
  ESME_RBINDFAIL: 0x0d,
  ESME_RMSGQFUL: 0x14,
  ESME_RTHROTTLED: 0x58,
};

const HEADER_LENGTH = 16;
// Largest PDU accepted: a submit_sm carrying a 64 KiB message_payload plus its fields.
const MAX_PDU_LENGTH = 70000;
smpp.PDU.maxLength = MAX_PDU_LENGTH;
// Sent by --malformed-after: command_length 10 is shorter than a PDU header.
const MALFORMED_PDU = Buffer.from('0000000a800000040000', 'hex');
// First message id handed out; its hex and decimal forms never look alike.
const FIRST_MESSAGE_ID = 1000000;
// How long an SMSC-initiated unbind waits for unbind_resp before closing the socket.
const UNBIND_GRACE_MS = 1000;

const MESSAGE_STATES = {
  ENROUTE: 1, DELIVRD: 2, EXPIRED: 3, DELETED: 4, UNDELIV: 5, ACCEPTD: 6, UNKNOWN: 7, REJECTD: 8,
};

// Session states and what each may do (a transition table, not scattered flags).
const BIND_STATES = {
  bind_transmitter: 'bound_tx',
  bind_receiver: 'bound_rx',
  bind_transceiver: 'bound_trx',
};
const CAN_SUBMIT = new Set(['bound_tx', 'bound_trx']);
const CAN_RECEIVE = new Set(['bound_rx', 'bound_trx']);

// ---------------------------------------------------------------- scenario flags

// name -> kind; names are the CLI flags with '-' replaced by '_'.
const SCENARIO_FLAGS = {
  dlr_delay_ms: 'int',
  dlr_stat: 'stat',
  dlr_err: 'int',
  throttle_every: 'int',
  throttle_burst: 'int',
  msgqful_every: 'int',
  drop_after: 'int',
  slow_resp_ms: 'int',
  duplicate_dlrs: 'bool',
  out_of_order_dlrs: 'bool',
  malformed_after: 'int',
  generic_nack_every: 'int',
  unbind_after: 'int',
  refuse_bind: 'bool',
  window_check: 'int',
  id_format: 'idfmt',
  dlr_id_format: 'dlridfmt',
};

const DEFAULT_SCENARIO = {
  dlr_delay_ms: 50,
  dlr_stat: 'DELIVRD',
  dlr_err: 0,
  throttle_every: 0,
  throttle_burst: 0,
  msgqful_every: 0,
  drop_after: 0,
  slow_resp_ms: 0,
  duplicate_dlrs: false,
  out_of_order_dlrs: false,
  malformed_after: 0,
  generic_nack_every: 0,
  unbind_after: 0,
  refuse_bind: false,
  window_check: 0,
  id_format: 'dec',
  dlr_id_format: 'dec',
};

function parseFlagValue(name, kind, value) {
  switch (kind) {
    case 'int': {
      const n = typeof value === 'number' ? value : Number(value);
      if (!Number.isInteger(n) || n < 0) {
        throw new Error(`${name}: expected a non-negative integer, got ${JSON.stringify(value)}`);
      }
      return n;
    }
    case 'bool':
      if (value === true || value === 'true' || value === '1' || value === 1) return true;
      if (value === false || value === 'false' || value === '0' || value === 0) return false;
      throw new Error(`${name}: expected a boolean, got ${JSON.stringify(value)}`);
    case 'stat':
      if (typeof value !== 'string' || !(value in MESSAGE_STATES)) {
        throw new Error(`${name}: expected one of ${Object.keys(MESSAGE_STATES).join('|')}`);
      }
      return value;
    case 'idfmt':
      if (value !== 'hex' && value !== 'dec') throw new Error(`${name}: expected hex|dec`);
      return value;
    case 'dlridfmt':
      if (value !== 'hex' && value !== 'dec' && value !== 'same') {
        throw new Error(`${name}: expected hex|dec|same`);
      }
      return value;
    default:
      throw new Error(`${name}: unknown kind ${kind}`);
  }
}

// ---------------------------------------------------------------- command line

function parseArgs(argv) {
  const options = {
    host: '127.0.0.1', port: 0, control_port: 0, system_id: 'test', password: 'secret',
    verbose: false,
  };
  const scenario = { ...DEFAULT_SCENARIO };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith('--')) throw new Error(`unexpected argument ${arg}`);
    let name = arg.slice(2);
    let inlineValue;
    const eq = name.indexOf('=');
    if (eq >= 0) {
      inlineValue = name.slice(eq + 1);
      name = name.slice(0, eq);
    }
    const key = name.replace(/-/g, '_');
    const takeValue = () => {
      if (inlineValue !== undefined) return inlineValue;
      if (i + 1 >= argv.length) throw new Error(`${arg} needs a value`);
      return argv[++i];
    };
    if (key === 'host' || key === 'system_id' || key === 'password') {
      options[key] = takeValue();
    } else if (key === 'port' || key === 'control_port') {
      options[key] = parseFlagValue(key, 'int', takeValue());
    } else if (key === 'verbose') {
      options.verbose = true;
    } else if (key in SCENARIO_FLAGS) {
      const kind = SCENARIO_FLAGS[key];
      const value = kind === 'bool' ? (inlineValue === undefined ? true : inlineValue) : takeValue();
      scenario[key] = parseFlagValue(key, kind, value);
    } else {
      throw new Error(`unknown flag ${arg}`);
    }
  }
  return { options, scenario };
}

// ---------------------------------------------------------------- helpers

function log(...parts) {
  process.stderr.write(`[smsc ${new Date().toISOString()}] ${parts.join(' ')}\n`);
}

function hex(buffer) {
  return Buffer.from(buffer).toString('hex');
}

function smppDate(date) {
  const two = (n) => String(n).padStart(2, '0');
  return two(date.getUTCFullYear() % 100) + two(date.getUTCMonth() + 1) + two(date.getUTCDate())
    + two(date.getUTCHours()) + two(date.getUTCMinutes());
}

function formatId(n, format) {
  return format === 'hex' ? n.toString(16) : n.toString(10);
}

// Reads the submit_sm body byte-exact (the library decodes text lossily).
class BodyReader {
  constructor(buffer, offset) {
    this.buffer = buffer;
    this.offset = offset;
  }

  need(n) {
    if (this.offset + n > this.buffer.length) {
      const err = new Error(`PDU truncated at offset ${this.offset}`);
      err.status = STATUS.ESME_RINVCMDLEN;
      throw err;
    }
  }

  int8() {
    this.need(1);
    return this.buffer[this.offset++];
  }

  int16() {
    this.need(2);
    const v = this.buffer.readUInt16BE(this.offset);
    this.offset += 2;
    return v;
  }

  bytes(n) {
    this.need(n);
    const v = this.buffer.subarray(this.offset, this.offset + n);
    this.offset += n;
    return v;
  }

  cstring() {
    const end = this.buffer.indexOf(0, this.offset);
    if (end < 0) {
      const err = new Error(`unterminated C-Octet String at offset ${this.offset}`);
      err.status = STATUS.ESME_RINVCMDLEN;
      throw err;
    }
    const v = this.buffer.toString('latin1', this.offset, end);
    this.offset = end + 1;
    return v;
  }

  remaining() {
    return this.buffer.length - this.offset;
  }
}

const TAG_SAR_MSG_REF_NUM = 0x020c;
const TAG_SAR_TOTAL_SEGMENTS = 0x020e;
const TAG_SAR_SEGMENT_SEQNUM = 0x020f;
const TAG_MESSAGE_PAYLOAD = 0x0424;

function tagName(tag) {
  return '0x' + tag.toString(16).padStart(4, '0');
}

function parseSubmitSm(raw) {
  const r = new BodyReader(raw, HEADER_LENGTH);
  const fields = {
    service_type: r.cstring(),
    source_addr_ton: r.int8(),
    source_addr_npi: r.int8(),
    source_addr: r.cstring(),
    dest_addr_ton: r.int8(),
    dest_addr_npi: r.int8(),
    destination_addr: r.cstring(),
    esm_class: r.int8(),
    protocol_id: r.int8(),
    priority_flag: r.int8(),
    schedule_delivery_time: r.cstring(),
    validity_period: r.cstring(),
    registered_delivery: r.int8(),
    replace_if_present_flag: r.int8(),
    data_coding: r.int8(),
    sm_default_msg_id: r.int8(),
  };
  const smLength = r.int8();
  const shortMessage = r.bytes(smLength);
  fields.sm_length = smLength;
  fields.short_message_hex = hex(shortMessage);
  const tlvs = {};
  let payload = null;
  while (r.remaining() > 0) {
    const tag = r.int16();
    const length = r.int16();
    const value = r.bytes(length);
    tlvs[tagName(tag)] = hex(value);
    if (tag === TAG_MESSAGE_PAYLOAD) payload = value;
    if (tag === TAG_SAR_MSG_REF_NUM && length === 2) fields.sar_msg_ref_num = value.readUInt16BE(0);
    if (tag === TAG_SAR_TOTAL_SEGMENTS && length === 1) fields.sar_total_segments = value[0];
    if (tag === TAG_SAR_SEGMENT_SEQNUM && length === 1) fields.sar_segment_seqnum = value[0];
  }
  fields.tlvs = tlvs;
  if (payload !== null) {
    fields.message_payload_hex = hex(payload);
    if (smLength !== 0) {
      const err = new Error('both short_message and message_payload present');
      err.status = STATUS.ESME_RINVMSGLEN;
      throw err;
    }
  }
  return { fields, userData: payload !== null ? payload : shortMessage };
}

// First 20 characters of the message for the DLR "text:" field, printable ASCII only.
function dlrText(record, userData) {
  let body = userData;
  if ((record.esm_class & 0x40) && body.length > 0) body = body.subarray(body[0] + 1);
  let text = (record.data_coding & 0x0f) === 0x08
    ? body.subarray(0, body.length - (body.length % 2)).swap16().toString('utf16le')
    : body.toString('latin1');
  text = text.replace(/[^\x20-\x7e]/g, '.');
  return text.slice(0, 20);
}

// MO text encoders: the library's own GSM 03.38 (unpacked septets), Latin-1 and UCS-2 coders.
const MO_ENCODERS = {
  0x00: (text) => smpp.encodings.ASCII.encode(text),
  0x01: (text) => Buffer.from(text, 'ascii'),
  0x03: (text) => smpp.encodings.LATIN1.encode(text),
  0x08: (text) => smpp.encodings.UCS2.encode(text),
};
// Without data_coding the text picks the first alphabet that holds it.
const MO_DETECTED_CODING = { ASCII: 0x00, LATIN1: 0x03, UCS2: 0x08 };

// ---------------------------------------------------------------- the SMSC

class Smsc {
  constructor(options, scenario) {
    this.options = options;
    this.scenario = scenario;
    this.sessions = new Map(); // id -> Session
    this.nextSessionId = 1;
    this.nextMessageId = FIRST_MESSAGE_ID;
    this.downUntil = 0;
    this.downMode = 'bindfail';
    this.clear();
    this.resetFlagBases();
  }

  clear() {
    this.messages = [];
    this.deliveries = [];
    this.uniqueKeys = new Set();
    this.stats = {
      binds: 0,
      bind_failures: 0,
      submits: 0,
      accepted: 0,
      rejected: 0,
      unique_messages: 0,
      dlrs_sent: 0,
      mo_sent: 0,
      deliver_resps: {},
      max_outstanding: 0,
      window_violations: 0,
      connections: 0,
      enquire_links: 0,
      unbinds: 0,
      generic_nacks_sent: 0,
      malformed_sent: 0,
      drops: 0,
      smsc_unbinds: 0,
    };
    this.burstWindow = -1;
    this.burstCount = 0;
    if (this.dlrTimer) clearTimeout(this.dlrTimer);
    this.dlrTimer = null;
    this.dlrBatch = [];
    this.pending = []; // deliver_sm waiting for a bound receiver: {system_id|null, options, kind}
    this.resetFlagBases();
  }

  // Counted scenario flags count submits from the moment they were set.
  resetFlagBases() {
    this.flagBase = {};
    for (const name of Object.keys(SCENARIO_FLAGS)) this.flagBase[name] = 0;
  }

  setScenario(changes) {
    const parsed = {};
    for (const [rawName, value] of Object.entries(changes)) {
      const name = rawName.replace(/-/g, '_');
      if (!(name in SCENARIO_FLAGS)) throw new Error(`unknown scenario flag ${rawName}`);
      parsed[name] = parseFlagValue(name, SCENARIO_FLAGS[name], value);
    }
    for (const [name, value] of Object.entries(parsed)) {
      this.scenario[name] = value;
      this.flagBase[name] = this.stats.submits;
    }
    log('scenario', JSON.stringify(parsed));
    if (this.scenario.dlr_delay_ms === 0 && this.dlrBatch.length) {
      this.dlrBatch = [];
    }
  }

  // Nth submit since the flag was set, for "every N" flags.
  everyHits(name, submitCount) {
    const n = this.scenario[name];
    return n > 0 && (submitCount - this.flagBase[name]) % n === 0;
  }

  // Exactly the Nth submit since the flag was set, for one-shot flags.
  onceHits(name, submitCount) {
    const n = this.scenario[name];
    return n > 0 && submitCount - this.flagBase[name] === n;
  }

  isDown() {
    return Date.now() < this.downUntil;
  }

  allocateMessageId() {
    return this.nextMessageId++;
  }

  boundReceivers(systemId) {
    const result = [];
    for (const s of this.sessions.values()) {
      if (CAN_RECEIVE.has(s.state) && (systemId === null || s.systemId === systemId)) {
        result.push(s);
      }
    }
    return result;
  }

  // Sends a deliver_sm to a bound receiver of system_id (any if null), or keeps it
  // until one binds, as a store-and-forward SMSC does.
  deliver(item) {
    const receivers = this.boundReceivers(item.system_id);
    if (!receivers.length) {
      this.pending.push(item);
      return null;
    }
    receivers.sort((a, b) => a.delivered - b.delivered);
    const target = receivers[0];
    target.sendDeliver(item);
    return target.id;
  }

  flushPending(session) {
    const keep = [];
    for (const item of this.pending) {
      if (item.system_id === null || item.system_id === session.systemId) {
        session.sendDeliver(item);
      } else {
        keep.push(item);
      }
    }
    this.pending = keep;
  }

  // The receipt is decided with the scenario in force when the submit_sm arrived.
  buildDlr(record, userData, systemId) {
    const state = this.scenario.dlr_stat;
    const rd = record.registered_delivery & 0x03;
    const wanted = rd === 1 || (rd === 2 && state !== 'DELIVRD');
    if (!wanted || this.scenario.dlr_delay_ms === 0) return null;
    const now = new Date();
    const idFormat = this.scenario.id_format;
    const textFormat = this.scenario.dlr_id_format === 'same' ? idFormat : this.scenario.dlr_id_format;
    const err = String(this.scenario.dlr_err).padStart(3, '0');
    const numericId = record.message_number;
    const text = `id:${formatId(numericId, textFormat)} sub:001 dlvrd:${state === 'DELIVRD' ? '001' : '000'}`
      + ` submit date:${smppDate(new Date(record.received_at_ms))} done date:${smppDate(now)}`
      + ` stat:${state} err:${err} text:${dlrText(record, userData)}`;
    const item = {
      kind: 'dlr',
      system_id: systemId,
      message_id: record.message_id,
      options: {
        source_addr_ton: record.dest_addr_ton,
        source_addr_npi: record.dest_addr_npi,
        source_addr: record.destination_addr,
        dest_addr_ton: record.source_addr_ton,
        dest_addr_npi: record.source_addr_npi,
        destination_addr: record.source_addr,
        esm_class: 0x04,
        data_coding: 0x00,
        short_message: Buffer.from(text, 'latin1'),
        receipted_message_id: record.message_id,
        message_state: MESSAGE_STATES[state],
      },
    };
    return item;
  }

  queueDlr(item) {
    this.dlrBatch.push(item);
    if (!this.dlrTimer) {
      this.dlrTimer = setTimeout(() => this.flushDlrs(), this.scenario.dlr_delay_ms || 1);
    }
  }

  flushDlrs() {
    this.dlrTimer = null;
    const batch = this.dlrBatch;
    this.dlrBatch = [];
    // Out of order: the batch is reversed (a deterministic shuffle tests can rely on).
    if (this.scenario.out_of_order_dlrs) batch.reverse();
    for (const item of batch) {
      this.deliver(item);
      if (this.scenario.duplicate_dlrs) this.deliver(item);
    }
  }

  injectMo(body) {
    if (typeof body.source_addr !== 'string' || typeof body.destination_addr !== 'string') {
      throw new Error('source_addr and destination_addr (strings) are required');
    }
    const options = {
      source_addr_ton: body.source_addr_ton ?? 1,
      source_addr_npi: body.source_addr_npi ?? 1,
      source_addr: body.source_addr,
      dest_addr_ton: body.dest_addr_ton ?? 0,
      dest_addr_npi: body.dest_addr_npi ?? 1,
      destination_addr: body.destination_addr,
      esm_class: body.esm_class ?? 0,
    };
    if (typeof body.short_message_hex === 'string') {
      options.short_message = Buffer.from(body.short_message_hex, 'hex');
      options.data_coding = body.data_coding ?? 0;
    } else if (typeof body.short_message === 'string') {
      const dataCoding = body.data_coding ?? MO_DETECTED_CODING[smpp.encodings.detect(body.short_message)];
      const encoder = MO_ENCODERS[dataCoding];
      if (!encoder) throw new Error(`data_coding ${dataCoding} not supported for text; use short_message_hex`);
      options.short_message = encoder(body.short_message);
      options.data_coding = dataCoding;
    } else {
      throw new Error('short_message (text) or short_message_hex is required');
    }
    if (body.tlvs && typeof body.tlvs === 'object') {
      options.extra_tlvs = body.tlvs;
    }
    const item = { kind: 'mo', system_id: body.system_id ?? null, options };
    this.stats.mo_sent += 1;
    const session = this.deliver(item);
    return { delivered_to: session, queued: session === null };
  }

  restart(downMs, mode) {
    this.downUntil = Date.now() + downMs;
    this.downMode = mode;
    log(`restart: dropping ${this.sessions.size} connection(s), down for ${downMs} ms (${mode})`);
    for (const s of [...this.sessions.values()]) s.destroy('restart');
  }

  snapshotStats() {
    const bound = [];
    for (const s of this.sessions.values()) {
      if (s.state.startsWith('bound')) {
        bound.push({ session: s.id, system_id: s.systemId, state: s.state });
      }
    }
    return {
      ...this.stats,
      active_connections: this.sessions.size,
      bound_sessions: bound,
      pending_deliveries: this.pending.length,
      scenario: { ...this.scenario },
    };
  }
}

// One TCP connection from an ESME.
class Session {
  constructor(smsc, socket) {
    this.smsc = smsc;
    this.socket = socket;
    this.id = smsc.nextSessionId++;
    this.state = 'open';
    this.systemId = null;
    this.buffer = Buffer.alloc(0);
    this.outstanding = 0;
    this.delivered = 0;
    this.sequence = 0;
    this.awaitingResp = new Map(); // sequence_number -> item
    this.closed = false;
    socket.on('data', (chunk) => this.onData(chunk));
    socket.on('close', () => this.onClose());
    socket.on('error', (e) => log(`session ${this.id}: socket error ${e.message}`));
  }

  destroy(reason) {
    if (this.closed) return;
    log(`session ${this.id}: closing (${reason})`);
    this.socket.destroy();
    this.onClose();
  }

  onClose() {
    if (this.closed) return;
    this.closed = true;
    this.state = 'closed';
    this.smsc.sessions.delete(this.id);
    // deliver_sm never acknowledged go back to the store, as an SMSC would retry them.
    for (const item of this.awaitingResp.values()) this.smsc.pending.push(item);
    this.awaitingResp.clear();
  }

  write(buffer) {
    if (!this.closed && this.socket.writable) this.socket.write(buffer);
  }

  send(pdu) {
    if (this.smsc.options.verbose) log(`session ${this.id}: -> ${pdu.command} seq=${pdu.sequence_number}`);
    this.write(pdu.toBuffer());
  }

  nextSequence() {
    this.sequence = this.sequence >= 0x7fffffff ? 1 : this.sequence + 1;
    return this.sequence;
  }

  onData(chunk) {
    this.buffer = this.buffer.length ? Buffer.concat([this.buffer, chunk]) : chunk;
    while (!this.closed && this.buffer.length >= 4) {
      const length = this.buffer.readUInt32BE(0);
      if (length < HEADER_LENGTH || length > MAX_PDU_LENGTH) {
        log(`session ${this.id}: invalid command_length ${length}`);
        const seq = this.buffer.length >= HEADER_LENGTH ? this.buffer.readUInt32BE(12) : 0;
        this.send(new smpp.PDU('generic_nack', {
          command_status: STATUS.ESME_RINVCMDLEN, sequence_number: seq,
        }));
        this.smsc.stats.generic_nacks_sent += 1;
        this.socket.end();
        this.buffer = Buffer.alloc(0);
        return;
      }
      if (this.buffer.length < length) return;
      const raw = Buffer.from(this.buffer.subarray(0, length));
      this.buffer = this.buffer.subarray(length);
      this.onPdu(raw);
    }
  }

  onPdu(raw) {
    const commandId = raw.readUInt32BE(4);
    const sequence = raw.readUInt32BE(12);
    let pdu;
    try {
      pdu = new smpp.PDU(raw);
    } catch (e) {
      log(`session ${this.id}: undecodable PDU 0x${commandId.toString(16)}: ${e.message}`);
      if (!(commandId & 0x80000000)) {
        this.send(new smpp.PDU('generic_nack', {
          command_status: STATUS.ESME_RSYSERR, sequence_number: sequence,
        }));
        this.smsc.stats.generic_nacks_sent += 1;
      }
      return;
    }
    if (this.smsc.options.verbose) log(`session ${this.id}: <- ${pdu.command} seq=${sequence}`);
    if (pdu.command === 'unknown') {
      if (!(commandId & 0x80000000)) {
        this.send(pdu.response());
        this.smsc.stats.generic_nacks_sent += 1;
      }
      return;
    }
    switch (pdu.command) {
      case 'bind_transmitter':
      case 'bind_receiver':
      case 'bind_transceiver':
        this.onBind(pdu);
        return;
      case 'submit_sm':
        this.onSubmit(pdu, raw);
        return;
      case 'enquire_link':
        this.smsc.stats.enquire_links += 1;
        this.send(pdu.response());
        return;
      case 'unbind':
        this.smsc.stats.unbinds += 1;
        this.state = 'unbinding';
        this.send(pdu.response());
        this.socket.end();
        return;
      case 'unbind_resp':
        this.destroy('unbind_resp received');
        return;
      case 'deliver_sm_resp':
        this.onDeliverResp(pdu);
        return;
      case 'enquire_link_resp':
      case 'generic_nack':
        return;
      default:
        if (pdu.isResponse()) return;
        this.send(pdu.response({ command_status: STATUS.ESME_RINVCMDID }));
    }
  }

  onBind(pdu) {
    const smsc = this.smsc;
    const fail = (status, why) => {
      smsc.stats.bind_failures += 1;
      log(`session ${this.id}: ${pdu.command} refused (${why})`);
      this.send(pdu.response({ command_status: status }));
    };
    if (this.state !== 'open') return fail(STATUS.ESME_RALYBND, 'already bound');
    if (smsc.scenario.refuse_bind) return fail(STATUS.ESME_RBINDFAIL, 'refuse_bind');
    if (smsc.isDown()) return fail(STATUS.ESME_RBINDFAIL, 'SMSC restarting');
    if (pdu.system_id !== smsc.options.system_id || pdu.password !== smsc.options.password) {
      return fail(STATUS.ESME_RBINDFAIL, `bad credentials for ${JSON.stringify(pdu.system_id)}`);
    }
    this.state = BIND_STATES[pdu.command];
    this.systemId = pdu.system_id;
    smsc.stats.binds += 1;
    log(`session ${this.id}: ${pdu.command} ok as ${pdu.system_id}`);
    this.send(pdu.response({ system_id: 'callgate-smsc-sim' }));
    if (CAN_RECEIVE.has(this.state)) smsc.flushPending(this);
  }

  onSubmit(pdu, raw) {
    const smsc = this.smsc;
    const scenario = smsc.scenario;
    smsc.stats.submits += 1;
    const count = smsc.stats.submits;
    const record = {
      index: smsc.messages.length + 1,
      seq: pdu.sequence_number,
      session: this.id,
      system_id: this.systemId,
      message_id: null,
      command_status: null,
      received_at_ms: Date.now(),
      raw_pdu_hex: hex(raw),
    };
    smsc.messages.push(record);

    let userData = Buffer.alloc(0);
    let parseStatus = STATUS.ESME_ROK;
    try {
      const parsed = parseSubmitSm(raw);
      Object.assign(record, parsed.fields);
      userData = parsed.userData;
    } catch (e) {
      log(`session ${this.id}: bad submit_sm: ${e.message}`);
      parseStatus = e.status || STATUS.ESME_RSYSERR;
    }

    this.outstanding += 1;
    if (this.outstanding > smsc.stats.max_outstanding) smsc.stats.max_outstanding = this.outstanding;
    if (scenario.window_check > 0 && this.outstanding > scenario.window_check) {
      smsc.stats.window_violations += 1;
      log(`session ${this.id}: window exceeded: ${this.outstanding} outstanding > ${scenario.window_check}`);
    }

    if (smsc.onceHits('drop_after', count)) {
      smsc.stats.drops += 1;
      record.dropped = true;
      this.destroy(`drop_after ${scenario.drop_after}`);
      return;
    }

    let status = parseStatus;
    let nack = false;
    if (!CAN_SUBMIT.has(this.state)) {
      status = STATUS.ESME_RINVBNDSTS;
    } else if (status === STATUS.ESME_ROK) {
      if (smsc.everyHits('generic_nack_every', count)) {
        nack = true;
        status = STATUS.ESME_RSYSERR;
      } else if (smsc.everyHits('throttle_every', count)) {
        status = STATUS.ESME_RTHROTTLED;
      } else if (scenario.throttle_burst > 0 && this.overBurst()) {
        status = STATUS.ESME_RTHROTTLED;
      } else if (smsc.everyHits('msgqful_every', count)) {
        status = STATUS.ESME_RMSGQFUL;
      }
    }
    const unbindAfter = smsc.onceHits('unbind_after', count);
    const malformedAfter = smsc.onceHits('malformed_after', count);

    let dlr = null;
    record.command_status = status;
    if (nack) record.generic_nack = true;
    if (status === STATUS.ESME_ROK) {
      const number = smsc.allocateMessageId();
      record.message_number = number;
      record.message_id = formatId(number, scenario.id_format);
      smsc.stats.accepted += 1;
      dlr = smsc.buildDlr(record, userData, this.systemId);
      const key = JSON.stringify([
        record.source_addr, record.destination_addr, record.esm_class, record.data_coding,
        record.short_message_hex, record.tlvs,
      ]);
      if (!smsc.uniqueKeys.has(key)) {
        smsc.uniqueKeys.add(key);
        smsc.stats.unique_messages += 1;
      }
    } else {
      smsc.stats.rejected += 1;
    }

    const respond = () => {
      this.outstanding -= 1;
      if (this.closed) return;
      if (nack) {
        smsc.stats.generic_nacks_sent += 1;
        this.send(new smpp.PDU('generic_nack', {
          command_status: status, sequence_number: pdu.sequence_number,
        }));
      } else if (status === STATUS.ESME_ROK) {
        this.send(pdu.response({ message_id: record.message_id }));
        if (dlr) smsc.queueDlr(dlr);
      } else {
        this.send(pdu.response({ command_status: status }));
      }
      if (malformedAfter) {
        log(`session ${this.id}: sending malformed PDU ${hex(MALFORMED_PDU)}`);
        smsc.stats.malformed_sent += 1;
        this.write(MALFORMED_PDU);
      }
      if (unbindAfter) this.startUnbind();
    };
    if (scenario.slow_resp_ms > 0) {
      setTimeout(respond, scenario.slow_resp_ms);
    } else {
      setImmediate(respond);
    }
  }

  overBurst() {
    const smsc = this.smsc;
    const window = Math.floor(Date.now() / 1000);
    if (window !== smsc.burstWindow) {
      smsc.burstWindow = window;
      smsc.burstCount = 0;
    }
    smsc.burstCount += 1;
    return smsc.burstCount > smsc.scenario.throttle_burst;
  }

  startUnbind() {
    this.smsc.stats.smsc_unbinds += 1;
    this.state = 'unbinding';
    log(`session ${this.id}: SMSC-initiated unbind`);
    this.send(new smpp.PDU('unbind', { sequence_number: this.nextSequence() }));
    setTimeout(() => this.destroy('unbind grace expired'), UNBIND_GRACE_MS).unref();
  }

  sendDeliver(item) {
    const options = { ...item.options, sequence_number: this.nextSequence() };
    const extra = options.extra_tlvs;
    delete options.extra_tlvs;
    const pdu = new smpp.PDU('deliver_sm', options);
    let buffer = pdu.toBuffer();
    if (extra) {
      const parts = [buffer];
      for (const [tag, valueHex] of Object.entries(extra)) {
        const value = Buffer.from(valueHex, 'hex');
        const head = Buffer.alloc(4);
        head.writeUInt16BE(Number.parseInt(tag, 16), 0);
        head.writeUInt16BE(value.length, 2);
        parts.push(head, value);
      }
      buffer = Buffer.concat(parts);
      buffer.writeUInt32BE(buffer.length, 0);
    }
    this.delivered += 1;
    this.awaitingResp.set(pdu.sequence_number, item);
    this.smsc.deliveries.push({
      kind: item.kind,
      session: this.id,
      seq: pdu.sequence_number,
      message_id: item.message_id ?? null,
      raw_pdu_hex: hex(buffer),
      sent_at_ms: Date.now(),
      resp_status: null,
    });
    if (item.kind === 'dlr') this.smsc.stats.dlrs_sent += 1;
    if (this.smsc.options.verbose) log(`session ${this.id}: -> deliver_sm (${item.kind}) seq=${pdu.sequence_number}`);
    this.write(buffer);
  }

  onDeliverResp(pdu) {
    const status = pdu.command_status;
    this.awaitingResp.delete(pdu.sequence_number);
    const stats = this.smsc.stats.deliver_resps;
    stats[status] = (stats[status] || 0) + 1;
    for (let i = this.smsc.deliveries.length - 1; i >= 0; i--) {
      const d = this.smsc.deliveries[i];
      if (d.session === this.id && d.seq === pdu.sequence_number) {
        d.resp_status = status;
        break;
      }
    }
  }
}

// ---------------------------------------------------------------- control API

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8').trim();
      if (!text) return resolve({});
      try {
        const value = JSON.parse(text);
        if (value === null || typeof value !== 'object' || Array.isArray(value)) {
          return reject(new Error('body must be a JSON object'));
        }
        return resolve(value);
      } catch (e) {
        return reject(new Error(`invalid JSON: ${e.message}`));
      }
    });
    req.on('error', reject);
  });
}

function controlServer(smsc) {
  return http.createServer(async (req, res) => {
    const reply = (code, value) => {
      const body = JSON.stringify(value);
      res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    };
    const route = `${req.method} ${req.url.split('?')[0]}`;
    let body;
    try {
      body = await readBody(req);
    } catch (e) {
      return reply(400, { error: e.message });
    }
    try {
      switch (route) {
        case 'GET /messages':
          return reply(200, smsc.messages.map((m) => {
            const { message_number: _unused, ...rest } = m;
            return rest;
          }));
        case 'GET /deliveries':
          return reply(200, smsc.deliveries);
        case 'GET /stats':
          return reply(200, smsc.snapshotStats());
        case 'GET /scenario':
          return reply(200, smsc.scenario);
        case 'POST /scenario':
          smsc.setScenario(body);
          return reply(200, smsc.scenario);
        case 'POST /mo':
          return reply(200, smsc.injectMo(body));
        case 'POST /reset':
          smsc.clear();
          return reply(200, { ok: true });
        case 'POST /restart': {
          const downMs = parseFlagValue('down_ms', 'int', body.down_ms ?? 0);
          const mode = body.mode ?? 'bindfail';
          if (mode !== 'bindfail' && mode !== 'close') throw new Error('mode: expected bindfail|close');
          smsc.restart(downMs, mode);
          return reply(200, { ok: true, down_until_ms: smsc.downUntil });
        }
        default:
          return reply(404, { error: `no route ${route}` });
      }
    } catch (e) {
      return reply(400, { error: e.message });
    }
  });
}

// ---------------------------------------------------------------- main

function main() {
  let parsed;
  try {
    parsed = parseArgs(process.argv.slice(2));
  } catch (e) {
    log(`error: ${e.message}`);
    process.exit(2);
  }
  const { options, scenario } = parsed;
  const smsc = new Smsc(options, scenario);

  const smppServer = net.createServer((socket) => {
    smsc.stats.connections += 1;
    if (smsc.isDown() && smsc.downMode === 'close') {
      socket.destroy();
      return;
    }
    const session = new Session(smsc, socket);
    smsc.sessions.set(session.id, session);
    log(`session ${session.id}: connection from ${socket.remoteAddress}:${socket.remotePort}`);
  });
  const control = controlServer(smsc);

  const shutdown = (why) => {
    log(`exiting (${why})`);
    process.exit(0);
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.stdin.on('end', () => shutdown('stdin closed'));
  process.stdin.on('error', () => shutdown('stdin error'));
  process.stdin.resume();

  smppServer.on('error', (e) => { log(`smpp server error: ${e.message}`); process.exit(1); });
  control.on('error', (e) => { log(`control server error: ${e.message}`); process.exit(1); });
  smppServer.listen(options.port, options.host, () => {
    control.listen(options.control_port, options.host, () => {
      const ports = { smpp_port: smppServer.address().port, control_port: control.address().port };
      process.stdout.write(JSON.stringify(ports) + '\n');
      log(`listening on ${options.host}: smpp ${ports.smpp_port}, control ${ports.control_port};`
        + ` scenario ${JSON.stringify(scenario)}`);
    });
  });
}

main();
