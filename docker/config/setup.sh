set -eu
cp -Rn /tongban-config/. /etc/tongban/
cd /etc/tongban
tongban db upgrade -c kunming/tongban.toml
tongban db upgrade -c doumen/tongban.toml
tongban db upgrade -c taoyuan/tongban.toml
tongban db upgrade -c changde/tongban.toml
[ -f kunming/anchor.json ] || tongban alliance init -c kunming/tongban.toml --name '昆明市'
[ -d doumen/keys ] || tongban key init -c doumen/tongban.toml
tongban key list -c doumen/tongban.toml --jwks > doumen/public-keys.json
cp kunming/anchor.json doumen/anchor.json
[ -d taoyuan/keys ] || tongban key init -c taoyuan/tongban.toml
tongban key list -c taoyuan/tongban.toml --jwks > taoyuan/public-keys.json
cp kunming/anchor.json taoyuan/anchor.json
[ -d changde/keys ] || tongban key init -c changde/tongban.toml
tongban key list -c changde/tongban.toml --jwks > changde/public-keys.json
cp kunming/anchor.json changde/anchor.json
tongban member list -c kunming/tongban.toml | grep -q CN-440403 || tongban member add -c kunming/tongban.toml CN-440403 --name '珠海市斗门区' --endpoint http://doumen:8700 --keys-file doumen/public-keys.json \
  --item 'KSTB-SB-0001:企业职工基本养老保险关系转移接续:online,proxy,joint' \
  --item 'KSTB-SB-0002:社会保险参保缴费记录查询:online' \
  --item 'KSTB-SB-0003:社会保障卡申领:online,proxy' \
  --item 'KSTB-JY-0001:失业登记:online,proxy' \
  --item 'KSTB-JY-0002:就业创业证申领:online,proxy' \
  --item 'KSTB-JY-0003:职业资格证书核验:online' \
  --item 'KSTB-JY-0004:技工院校毕业证书查询核验:online' \
  --item 'KSTB-YB-0001:异地就医登记备案:online,proxy' \
  --item 'KSTB-YB-0002:基本医疗保险关系转移接续:online,proxy,joint' \
  --item 'KSTB-HJ-0001:户口迁移:proxy,joint' \
  --item 'KSTB-HJ-0002:首次申领居民身份证:proxy' \
  --item 'KSTB-CR-0001:普通护照签发:proxy' \
  --item 'KSTB-JG-0001:机动车驾驶证审验:online,proxy' \
  --item 'KSTB-GZ-0001:学历公证:online,proxy' \
  --item 'KSTB-GZ-0002:驾驶证公证:online,proxy' \
  --item 'KSTB-GJ-0001:正常退休提取住房公积金:online,proxy' \
  --item 'KSTB-GJ-0002:住房公积金单位登记开户:online,proxy' \
  --item 'KSTB-GJ-0003:个人住房公积金缴存贷款等信息查询:online' \
  --item 'KSTB-GJ-0004:出具贷款职工住房公积金缴存使用证明:online' \
  --item 'KSTB-GJ-0005:住房公积金单位及个人缴存信息变更:online,proxy' \
  --item 'KSTB-SJ-0001:市场主体登记注册:online,proxy' \
  --item 'KSTB-SJ-0002:工业产品生产许可证:online,proxy' \
  --item 'KSTB-BD-0001:不动产抵押登记:online,proxy' \
  --item 'KSTB-MZ-0001:婚姻登记:joint' \
  --item 'KSTB-WJ-0001:出生医学证明补发:online,proxy' \
  --item 'KSTB-CL-0001:残疾人证迁移:proxy,joint'
tongban member list -c kunming/tongban.toml | grep -q CN-430725 || tongban member add -c kunming/tongban.toml CN-430725 --name '常德市桃源县' --endpoint http://taoyuan:8700 --keys-file taoyuan/public-keys.json \
  --item 'KSTB-SB-0001:企业职工基本养老保险关系转移接续:online,proxy,joint' \
  --item 'KSTB-SB-0002:社会保险参保缴费记录查询:online' \
  --item 'KSTB-SB-0003:社会保障卡申领:online,proxy' \
  --item 'KSTB-JY-0001:失业登记:online,proxy' \
  --item 'KSTB-JY-0002:就业创业证申领:online,proxy' \
  --item 'KSTB-JY-0003:职业资格证书核验:online' \
  --item 'KSTB-JY-0004:技工院校毕业证书查询核验:online' \
  --item 'KSTB-YB-0001:异地就医登记备案:online,proxy' \
  --item 'KSTB-YB-0002:基本医疗保险关系转移接续:online,proxy,joint' \
  --item 'KSTB-HJ-0001:户口迁移:proxy,joint' \
  --item 'KSTB-HJ-0002:首次申领居民身份证:proxy' \
  --item 'KSTB-CR-0001:普通护照签发:proxy' \
  --item 'KSTB-JG-0001:机动车驾驶证审验:online,proxy' \
  --item 'KSTB-GZ-0001:学历公证:online,proxy' \
  --item 'KSTB-GZ-0002:驾驶证公证:online,proxy' \
  --item 'KSTB-GJ-0001:正常退休提取住房公积金:online,proxy' \
  --item 'KSTB-GJ-0002:住房公积金单位登记开户:online,proxy' \
  --item 'KSTB-GJ-0003:个人住房公积金缴存贷款等信息查询:online' \
  --item 'KSTB-GJ-0004:出具贷款职工住房公积金缴存使用证明:online' \
  --item 'KSTB-GJ-0005:住房公积金单位及个人缴存信息变更:online,proxy' \
  --item 'KSTB-SJ-0001:市场主体登记注册:online,proxy' \
  --item 'KSTB-SJ-0002:工业产品生产许可证:online,proxy' \
  --item 'KSTB-BD-0001:不动产抵押登记:online,proxy' \
  --item 'KSTB-MZ-0001:婚姻登记:joint' \
  --item 'KSTB-WJ-0001:出生医学证明补发:online,proxy' \
  --item 'KSTB-CL-0001:残疾人证迁移:proxy,joint'
tongban member list -c kunming/tongban.toml | grep -q CN-430700 || tongban member add -c kunming/tongban.toml CN-430700 --name '常德市' --endpoint http://changde:8700 --keys-file changde/public-keys.json \
  --item 'KSTB-SB-0001:企业职工基本养老保险关系转移接续:online,proxy,joint' \
  --item 'KSTB-SB-0002:社会保险参保缴费记录查询:online' \
  --item 'KSTB-SB-0003:社会保障卡申领:online,proxy' \
  --item 'KSTB-JY-0001:失业登记:online,proxy' \
  --item 'KSTB-JY-0002:就业创业证申领:online,proxy' \
  --item 'KSTB-JY-0003:职业资格证书核验:online' \
  --item 'KSTB-JY-0004:技工院校毕业证书查询核验:online' \
  --item 'KSTB-YB-0001:异地就医登记备案:online,proxy' \
  --item 'KSTB-YB-0002:基本医疗保险关系转移接续:online,proxy,joint' \
  --item 'KSTB-HJ-0001:户口迁移:proxy,joint' \
  --item 'KSTB-HJ-0002:首次申领居民身份证:proxy' \
  --item 'KSTB-CR-0001:普通护照签发:proxy' \
  --item 'KSTB-JG-0001:机动车驾驶证审验:online,proxy' \
  --item 'KSTB-GZ-0001:学历公证:online,proxy' \
  --item 'KSTB-GZ-0002:驾驶证公证:online,proxy' \
  --item 'KSTB-GJ-0001:正常退休提取住房公积金:online,proxy' \
  --item 'KSTB-GJ-0002:住房公积金单位登记开户:online,proxy' \
  --item 'KSTB-GJ-0003:个人住房公积金缴存贷款等信息查询:online' \
  --item 'KSTB-GJ-0004:出具贷款职工住房公积金缴存使用证明:online' \
  --item 'KSTB-GJ-0005:住房公积金单位及个人缴存信息变更:online,proxy' \
  --item 'KSTB-SJ-0001:市场主体登记注册:online,proxy' \
  --item 'KSTB-SJ-0002:工业产品生产许可证:online,proxy' \
  --item 'KSTB-BD-0001:不动产抵押登记:online,proxy' \
  --item 'KSTB-MZ-0001:婚姻登记:joint' \
  --item 'KSTB-WJ-0001:出生医学证明补发:online,proxy' \
  --item 'KSTB-CL-0001:残疾人证迁移:proxy,joint'
chown -R 10001:10001 /etc/tongban
