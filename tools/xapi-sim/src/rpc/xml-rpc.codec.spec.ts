import {
  decodeMethodCall,
  encodeFailure,
  encodeSuccess,
  encodeValue,
  XmlRpcParseError,
} from './xml-rpc.codec';

describe('XML-RPC codec', () => {
  it('decodes every XML-RPC value type of a methodCall', () => {
    const call = decodeMethodCall(
      `<?xml version="1.0"?><methodCall><methodName>VM.add_to_other_config</methodName><params>` +
        `<param><value>OpaqueRef:s &amp; &lt;1&gt;</value></param>` +
        `<param><value><string>key</string></value></param>` +
        `<param><value><i4>-5</i4></value></param>` +
        `<param><value><int>7</int></value></param>` +
        `<param><value><double>60.1</double></value></param>` +
        `<param><value><boolean>1</boolean></value></param>` +
        `<param><value><array><data><value>a</value><value><boolean>0</boolean></value></data></array></value></param>` +
        `<param><value><struct><member><name>k</name><value><dateTime.iso8601>20261126T07:00:00Z</dateTime.iso8601></value></member></struct></value></param>` +
        `<param><value><nil/></value></param>` +
        `</params></methodCall>`,
    );
    expect(call).toEqual({
      method: 'VM.add_to_other_config',
      params: [
        'OpaqueRef:s & <1>',
        'key',
        -5,
        7,
        60.1,
        true,
        ['a', false],
        { k: '20261126T07:00:00Z' },
        null,
      ],
    });
  });

  it('encodes int64 as strings, floats as doubles and known datetime fields as dateTime', () => {
    expect(
      encodeValue({
        virtual_size: 10737418240,
        progress: 1,
        snapshot_time: '20261126T07:00:00Z',
        name: 'a<b',
      }),
    ).toBe(
      '<value><struct>' +
        '<member><name>virtual_size</name><value>10737418240</value></member>' +
        '<member><name>progress</name><value><double>1.0</double></value></member>' +
        '<member><name>snapshot_time</name><value><dateTime.iso8601>20261126T07:00:00Z</dateTime.iso8601></value></member>' +
        '<member><name>name</name><value>a&lt;b</value></member>' +
        '</struct></value>',
    );
  });

  it('sends the int32 counts of event batches as i4 (the client compares them with numbers)', () => {
    expect(encodeValue({ valid_ref_counts: { task: 3 }, token: '12' })).toBe(
      '<value><struct><member><name>valid_ref_counts</name><value><struct><member><name>task</name><value><i4>3</i4></value></member></struct></value></member>' +
        '<member><name>token</name><value>12</value></member></struct></value>',
    );
  });

  it('wraps answers in XAPI status structs', () => {
    expect(encodeSuccess('OpaqueRef:1')).toContain(
      '<member><name>Status</name><value>Success</value></member><member><name>Value</name><value>OpaqueRef:1</value></member>',
    );
    expect(encodeFailure(['HANDLE_INVALID', 'VM', 'OpaqueRef:x'])).toContain(
      '<member><name>ErrorDescription</name><value><array><data><value>HANDLE_INVALID</value><value>VM</value><value>OpaqueRef:x</value></data></array></value></member>',
    );
  });

  it.each([
    ['<methodCall><methodName>x</methodName>', 'unclosed'],
    [
      '<methodCall><methodName>x</methodName><params><param><value><weird>1</weird></value></param></params></methodCall>',
      'unknown value type',
    ],
    ['<nothing/>', 'lacks <methodCall>'],
  ])('rejects malformed input %s with a typed error', (xml, message) => {
    expect(() => decodeMethodCall(xml)).toThrow(XmlRpcParseError);
    expect(() => decodeMethodCall(xml)).toThrow(message);
  });
});
